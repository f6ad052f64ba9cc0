"""Exact rank AUROC and the stratified bootstrap CI, against sklearn and the Hanley-McNeil formula."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from wmoe_clip.report.stats import auroc_rows, bootstrap_auroc_ci


def test_auroc_rows_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    n_neg, n_pos = 17, 23
    scores = rng.integers(0, 6, size=(50, n_neg + n_pos)).astype(float)  # many ties
    labels = np.r_[np.zeros(n_neg), np.ones(n_pos)]
    expected = [roc_auc_score(labels, row) for row in scores]
    np.testing.assert_allclose(auroc_rows(scores, n_neg), expected, rtol=0, atol=1e-12)


def _hanley_mcneil_se(a: float, n_neg: int, n_pos: int) -> float:
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return np.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_neg * n_pos))


def test_ci_width_matches_the_closed_form_standard_error():
    rng = np.random.default_rng(2)
    n_neg, n_pos = 300, 300
    labels = [0] * n_neg + [1] * n_pos
    scores = np.r_[rng.normal(0, 1, n_neg), rng.normal(1, 1, n_pos)]
    auc = roc_auc_score(labels, scores)
    low, high = bootstrap_auroc_ci([{"c": {"labels": labels, "scores": scores.tolist()}}], resamples=2000)
    assert low < auc < high
    expected_width = 2 * 1.96 * _hanley_mcneil_se(auc, n_neg, n_pos)
    assert (high - low) == pytest.approx(expected_width, rel=0.2)


def test_ci_is_reproducible_and_macro_averages_classes():
    rng = np.random.default_rng(3)
    cls = lambda shift: {"labels": [0] * 40 + [1] * 30, "scores": np.r_[rng.normal(0, 1, 40), rng.normal(shift, 1, 30)].tolist()}  # noqa: E731
    scores = {"easy": cls(3.0), "hard": cls(0.2)}
    a = bootstrap_auroc_ci([scores], resamples=500, seed=7)
    assert a == bootstrap_auroc_ci([scores], resamples=500, seed=7)
    macro = np.mean([roc_auc_score(s["labels"], s["scores"]) for s in scores.values()])
    assert a[0] < macro < a[1]
    # The hard class alone is far lower: the interval is the macro mean's, not a single class's.
    assert roc_auc_score(scores["hard"]["labels"], scores["hard"]["scores"]) < a[0]


def test_seeds_share_the_test_images():
    rng = np.random.default_rng(4)
    one = {"c": {"labels": [0] * 30 + [1] * 30, "scores": rng.normal(size=60).tolist()}}
    # Two identical seeds resample the same images, so the interval is the single seed's.
    assert bootstrap_auroc_ci([one, one], resamples=300) == bootstrap_auroc_ci([one], resamples=300)


def test_single_label_classes_have_no_interval():
    only_anomalous = {"polyp": {"labels": [1, 1, 1], "scores": [0.1, 0.5, 0.9]}}
    assert bootstrap_auroc_ci([only_anomalous]) is None
