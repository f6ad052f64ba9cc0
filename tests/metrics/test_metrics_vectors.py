"""The test vectors of docs/METRICS.md §7 (values given there, tolerance 1e-12 unless stated)."""

import numpy as np
import pytest

from wmoe_clip.metrics import aupro, label_regions, pixel_metrics

TOL = 1e-12


@pytest.mark.parametrize(("columns", "exact_third", "n_regions"),
                         [((3,), 0.166665625, 1), ((1, 3, 5), 0.1666661458, 3)])
def test_anomalib_vector(columns, exact_third, n_regions):
    maps = (np.arange(2800) / 2800).reshape(1, 400, 7)
    masks = np.zeros(maps.shape, dtype=bool)
    masks[0][:, list(columns)] = True
    assert label_regions(masks).count == n_regions
    third = aupro(masks, maps, fpr_limit=1 / 3)
    assert third == pytest.approx(1 / 6, abs=1e-5)
    assert third == pytest.approx(exact_third, abs=1e-10)  # the doc quotes 10 significant digits
    assert aupro(masks, maps) == pytest.approx(0.15, abs=TOL)


def test_constant_map():
    masks = np.zeros((2, 5, 5), dtype=bool)
    masks[0, 1:3, 1:3] = True
    maps = np.full(masks.shape, 0.7, dtype=np.float32)
    result = pixel_metrics(masks, maps)
    assert result["aupro"] == pytest.approx(0.15, abs=TOL)
    assert result["auroc"] == 0.5
    assert result["aupro_anomalyclip"] is None
    assert aupro(masks, maps, fpr_limit=0.8) == pytest.approx(0.4, abs=TOL)


def test_perfect_and_inverted_separation():
    masks = np.zeros((3, 6, 6), dtype=bool)
    masks[0, 1:3, 1:4] = True
    masks[2, 4:, 4:] = True
    maps = np.where(masks, 2.0, 1.0) + 0.1 * np.random.default_rng(0).random(masks.shape)
    result = pixel_metrics(masks, maps)
    for metric in ("auroc", "ap", "f1_max", "aupro"):
        assert result[metric] == pytest.approx(1.0, abs=TOL)
    inverted = pixel_metrics(masks, -maps)
    assert inverted["auroc"] == 0.0
    assert inverted["aupro"] == pytest.approx(0.0, abs=TOL)


def test_tie_case_a():
    masks = np.array([[[1, 1, 0, 0]]], dtype=bool)
    maps = np.array([[[0.9, 0.5, 0.5, 0.1]]])
    result = pixel_metrics(masks, maps)
    assert result["aupro"] == pytest.approx(0.65, abs=TOL)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(0.875, abs=TOL)
    assert result["auroc"] == pytest.approx(0.875, abs=TOL)
    assert result["ap"] == pytest.approx(5 / 6, abs=TOL)
    assert result["f1_max"] == pytest.approx(0.8, abs=TOL)


def test_defect_free_image_case_b():
    masks = np.array([[[1, 0, 0, 0]], [[0, 0, 0, 0]]], dtype=bool)
    maps = np.array([[[0.55, 0.2, 0.4, 0.6]], [[0.7, 0.1, 0.3, 0.5]]])
    result = pixel_metrics(masks, maps)
    assert result["aupro"] == pytest.approx(1 / 21, abs=TOL)
    assert result["auroc"] == pytest.approx(5 / 7, abs=TOL)
    assert result["ap"] == pytest.approx(1 / 3, abs=TOL)
    assert result["f1_max"] == pytest.approx(0.5, abs=TOL)


def test_equal_region_weight_case_c():
    masks = np.zeros((1, 5, 6), dtype=bool)
    maps = np.zeros(masks.shape)
    masks[0, 0:2, 0:4] = True  # 8 px scored 1.0
    maps[0, 0:2, 0:4] = 1.0
    masks[0, 4, 5] = True  # 1 px scored -1.0
    maps[0, 4, 5] = -1.0
    assert label_regions(masks).count == 2
    result = pixel_metrics(masks, maps)
    assert result["aupro"] == pytest.approx(0.5, abs=TOL)
    assert result["auroc"] == pytest.approx(168 / 189, abs=TOL)
    assert result["ap"] == pytest.approx(8 / 9 + 1 / 9 * 9 / 30, abs=TOL)  # 0.922222 in the doc
    assert result["f1_max"] == pytest.approx(16 / 17, abs=TOL)


def test_eight_connectivity():
    masks = np.zeros((1, 4, 4), dtype=bool)
    maps = np.full(masks.shape, 0.5)
    masks[0, 1, 1] = masks[0, 2, 2] = True
    maps[0, 1, 1], maps[0, 2, 2] = 1.0, 0.0
    assert label_regions(masks).count == 1
    assert aupro(masks, maps) == pytest.approx(0.5, abs=TOL)
