"""AUROC, AP and F1-max against sklearn (and the AdaCLIP F1 recipe), ties, one-class and large-count cases."""

import numpy as np
import pytest
from metrics_cases import random_scores
from metrics_reference import sklearn_rank

from wmoe_clip.metrics import image_metrics, pixel_metrics, rank_metrics


@pytest.mark.parametrize("kind", ["ties", "float32", "float64", "constant"])
def test_rank_metrics_match_sklearn(kind):
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(2, 3000))
        labels = rng.random(n) < rng.uniform(0.02, 0.9)
        labels[:2] = [True, False]
        scores = random_scores(rng, n, kind)
        if kind != "constant":
            scores = (scores + rng.uniform(0, 1) * labels).astype(scores.dtype)
        got = image_metrics(labels.astype(float), scores)
        want = sklearn_rank(labels, scores)
        for metric in want:
            assert got[metric] == pytest.approx(want[metric], abs=1e-12), metric


def test_constant_scores_and_perfect_separation():
    labels = np.array([0, 1, 0, 1, 1])
    assert image_metrics(labels, np.zeros(5))["auroc"] == 0.5
    assert image_metrics(labels, labels * 2.0 - 1) == {"auroc": 1.0, "ap": 1.0, "f1_max": 1.0}
    assert image_metrics(labels, 1.0 - labels)["auroc"] == 0.0


def test_one_class_is_not_applicable():
    assert image_metrics([1, 1, 1], [0.2, 0.5, 0.1]) == {"auroc": None, "ap": None, "f1_max": None}
    assert image_metrics([0, 0], [0.2, 0.5]) == {"auroc": None, "ap": None, "f1_max": None}
    result = pixel_metrics(np.zeros((2, 4, 4)), np.random.default_rng(0).random((2, 4, 4)))
    assert all(value is None for value in result.values())
    result = pixel_metrics(np.ones((1, 3, 3)), np.random.default_rng(0).random((1, 3, 3)))
    assert all(value is None for value in result.values())


def test_increasing_transform_leaves_rank_metrics_unchanged():
    rng = np.random.default_rng(3)
    labels = rng.random(5000) < 0.1
    scores = np.round(rng.normal(size=5000) + labels, 2).astype(np.float32)
    base = rank_metrics(labels, scores)
    transformed = np.exp(3 * scores.astype(np.float64)) - 7  # float64: no new ties
    assert rank_metrics(labels, transformed) == base


def test_counts_stay_exact_past_float32_integers():
    # 64 images of 518² = 17,172,736 px > 2**24: a float32 counter could not hold the normal count.
    masks = np.zeros((64, 518, 518), dtype=bool)
    maps = np.zeros(masks.shape, dtype=np.float32)
    masks[10, 100, 100] = True
    maps[10, 100, 100] = 1.0
    maps[3, 5, 5] = 2.0  # one normal pixel above the anomaly
    n_neg = masks.size - 1
    result = pixel_metrics(masks, maps)
    assert result["auroc"] == pytest.approx((n_neg - 1) / n_neg, abs=1e-15)
    assert result["ap"] == 0.5
    assert result["f1_max"] == pytest.approx(2 / 3, abs=1e-15)
    # Curve (0,0) -> (1/N0, 0) -> (1/N0, 1) -> (1, 1): area to 0.3 is 0.3 - 1/N0.
    assert result["aupro"] == pytest.approx(1 - 1 / (0.3 * n_neg), abs=1e-13)
    assert result["aupro_anomalyclip"] is None  # every grid FPR is 1/N0: the anchor's rescaling fails
