"""AUPRO against the brute-force MVTec reference and the faithful AnomalyCLIP loop, plus its invariants."""

import numpy as np
import pytest
from metrics_cases import random_class
from metrics_reference import anomalyclip_loop, brute_force_aupro, sklearn_rank

from wmoe_clip.metrics import aupro, label_regions, pixel_metrics


def _agree(got, want, tol):
    if want is None:
        return got is None
    return got is not None and abs(got - want) <= tol


@pytest.mark.parametrize("kind", ["ties", "float32", "float64"])
def test_exact_aupro_matches_brute_force(kind):
    rng = np.random.default_rng({"ties": 1, "float32": 2, "float64": 3}[kind])
    for _ in range(60):
        masks, maps = random_class(rng, kind)
        for limit in (0.3, 1.0, float(rng.uniform(0.01, 1))):
            want = brute_force_aupro(masks, maps, limit)
            assert _agree(aupro(masks, maps, fpr_limit=limit), want, 1e-12), (masks, maps, limit)
        assert _agree(pixel_metrics(masks, maps)["aupro"], brute_force_aupro(masks, maps), 1e-12)


@pytest.mark.parametrize("kind", ["ties", "float32", "float64", "constant"])
def test_anomalyclip_aupro_matches_the_threshold_loop(kind):
    rng = np.random.default_rng({"ties": 4, "float32": 5, "float64": 6, "constant": 7}[kind])
    for _ in range(25):
        masks, maps = random_class(rng, kind)
        want = anomalyclip_loop(masks, maps)
        assert _agree(aupro(masks, maps, variant="anomalyclip"), want, 1e-12), (masks, maps)
        assert _agree(pixel_metrics(masks, maps)["aupro_anomalyclip"], want, 1e-12)


@pytest.mark.parametrize("kind", ["ties", "float32", "float64", "constant"])
def test_pixel_metrics_match_sklearn_on_pooled_pixels(kind):
    rng = np.random.default_rng({"ties": 8, "float32": 9, "float64": 10, "constant": 11}[kind])
    for _ in range(30):
        masks, maps = random_class(rng, kind)
        masks[0, 0, 0], masks[0, 0, 1] = True, False  # both labels present
        got = pixel_metrics(masks, maps)
        for metric, value in sklearn_rank(masks, maps).items():
            assert got[metric] == pytest.approx(value, abs=1e-12), (metric, masks, maps)


def test_exact_aupro_is_invariant_to_increasing_transforms_anomalyclip_is_not():
    rng = np.random.default_rng(12)
    masks = np.zeros((6, 24, 24), dtype=bool)
    masks[:3, 5:12, 6:14] = True
    masks[1, 18:21, 2:4] = True
    maps = (rng.random(masks.shape) + 0.8 * masks).astype(np.float32)
    skewed = np.exp(6 * maps.astype(np.float64))  # same ranks, float64 so no new ties
    exact = ("auroc", "ap", "f1_max", "aupro")
    base, moved = pixel_metrics(masks, maps), pixel_metrics(masks, skewed)
    assert {m: moved[m] for m in exact} == pytest.approx({m: base[m] for m in exact}, abs=1e-12)
    assert aupro(masks, skewed) == pytest.approx(aupro(masks, maps), abs=1e-12)
    # The anchor's grid is uniform in score, so a skewed map moves it (docs/METRICS.md §7.8).
    assert abs(aupro(masks, skewed, variant="anomalyclip") - aupro(masks, maps, variant="anomalyclip")) > 1e-4


def test_regions_are_8_connected_and_never_span_images():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 3, 0] = True  # bottom row of image 0 ...
    masks[1, 0, 0] = True  # ... and top row of image 1, same column: two regions
    masks[0, 1, 1] = masks[0, 2, 2] = True  # diagonal neighbours: one region
    regions = label_regions(masks)
    assert regions.count == 3
    assert sorted(regions.sizes.tolist()) == [1, 1, 2]


def test_defect_free_images_enter_the_fpr():
    masks = np.array([[[1, 0, 0, 0]], [[0, 0, 0, 0]]], dtype=bool)
    maps = np.array([[[0.55, 0.2, 0.4, 0.6]], [[0.7, 0.1, 0.3, 0.5]]])
    assert aupro(masks, maps) == pytest.approx(1 / 21, abs=1e-12)
    assert aupro(masks[:1], maps[:1]) == 0.0  # without image 2 the value would be wrong (docs/METRICS.md §7.5)


def test_variant_and_limit_are_validated():
    masks, maps = np.array([[[1, 0]]]), np.array([[[0.9, 0.1]]])
    with pytest.raises(ValueError, match="variant"):
        aupro(masks, maps, variant="mvtec3d")
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(masks, maps, fpr_limit=0)
