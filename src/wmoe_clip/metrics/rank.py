"""Exact AUROC, AP and F1-max from two sorts (docs/METRICS.md §2 and §4.1).

The scores are split by label and each half is sorted ascending. Everything the three metrics need at a
distinct positive score u is read off with binary searches into the sorted negatives:
TP(u) = positives >= u, FP(u) = negatives >= u, and the negatives < u and <= u for the AUROC ties.

- AUROC = sum_u c(u) * (lt(u) + le(u)) / (2 P N), the numerator an exact integer (sklearn's trapezoid).
- AP = sum_u (c(u) / P) * TP / (TP + FP), sklearn's step sum.
- F1-max = max_u 2 TP / (TP + FP + P), the maximum of the anchors' F1 over the PR curve (§2.3).
"""

from __future__ import annotations

import numpy as np

from wmoe_clip.metrics._checks import MetricInputError, binary_array, same_shape, scores_array

RANK_METRICS = ("auroc", "ap", "f1_max")


def rank_metrics_sorted(pos: np.ndarray, neg: np.ndarray) -> dict[str, float | None]:
    """AUROC, AP and F1-max from the positive and negative scores, each sorted ascending (same dtype).

    Returns None for every metric when either side is empty (the metric does not apply).
    """
    n_pos, n_neg = pos.size, neg.size
    if n_pos == 0 or n_neg == 0:
        return dict.fromkeys(RANK_METRICS)
    start = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1])))
    u = pos[start]
    count = np.diff(np.append(start, n_pos))
    tp = n_pos - start
    lt = np.searchsorted(neg, u, side="left")
    le = np.searchsorted(neg, u, side="right")
    fp = n_neg - lt
    # The Mann-Whitney numerator with half credit for ties, doubled to stay integral; int64 and Python ints
    # keep it exact where P*N approaches 2**53 (a pooled 518² class).
    twice_u = int(np.dot(count, lt + le))
    auroc = twice_u / (2 * int(n_pos) * int(n_neg))
    ap = float(np.sum(count / n_pos * (tp / (tp + fp))))
    f1_max = float(np.max(2 * tp / (tp + fp + n_pos)))
    return {"auroc": float(auroc), "ap": ap, "f1_max": f1_max}


def split_sorted(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positive and negative scores, each a fresh copy sorted ascending in place."""
    pos = scores[labels]
    neg = scores[~labels]
    pos.sort()
    neg.sort()
    return pos, neg


def rank_metrics(labels, scores) -> dict[str, float | None]:
    """Exact AUROC, AP and F1-max of any binary labels and scores of the same shape (flattened)."""
    labels = binary_array(labels, "labels")
    scores = scores_array(scores, "scores")
    same_shape(labels, "labels", scores, "scores")
    return rank_metrics_sorted(*split_sorted(labels.ravel(), scores.ravel()))


def image_metrics(labels, scores) -> dict[str, float | None]:
    """Image AUROC, AP and F1-max from one label (0/1) and one score per image; None where one class only."""
    labels = binary_array(labels, "labels")
    scores = scores_array(scores, "scores")
    if labels.ndim != 1:
        raise MetricInputError(f"labels must be one-dimensional (one label per image), got shape {labels.shape}")
    same_shape(labels, "labels", scores, "scores")
    return rank_metrics_sorted(*split_sorted(labels, scores))
