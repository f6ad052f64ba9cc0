"""Uncertainty for the tables: mean ± std over seeds, and a bootstrap CI for image AUROC.

The bootstrap resamples test images *within each class and label* (stratified, so every replicate
keeps the class sizes and both labels), recomputes each class's exact AUROC from ranks, and takes the
macro mean over classes as the dataset figure does (docs/METRICS.md §1.1). With several seeds the same
image indices are drawn for every seed (the test set is shared) and the replicate statistic is the
mean over seeds, so the interval reflects the finite test set around the reported mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0


def auroc_rows(scores: np.ndarray, n_neg: int) -> np.ndarray:
    """Exact AUROC of every row of ``scores`` whose first ``n_neg`` columns are negatives.

    Mann-Whitney: (rank sum of positives - n_pos(n_pos+1)/2) / (n_neg n_pos), ties at mid-rank.
    """
    n_pos = scores.shape[1] - n_neg
    ranks = rankdata(scores, axis=1)
    return (ranks[:, n_neg:].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_neg * n_pos)


def _strata(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)


def bootstrap_auroc_ci(
    per_seed: Sequence[Mapping[str, Mapping[str, Sequence[float]]]],
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float] | None:
    """Percentile CI of the seed-mean macro image AUROC.

    ``per_seed``: one ``image_scores`` mapping per seed (class -> {"labels": [...], "scores": [...]}).
    Classes with a single label have no AUROC and are skipped, as the dataset means skip them.
    Returns None when no class has both labels.
    """
    rng = np.random.default_rng(seed)
    classes = sorted(set().union(*(s.keys() for s in per_seed))) if per_seed else []
    class_stats = []
    for cls in classes:
        entries = [s[cls] for s in per_seed if cls in s]
        labels = [np.asarray(e["labels"], dtype=int) for e in entries]
        neg, pos = _strata(labels[0])
        if len(neg) == 0 or len(pos) == 0:
            continue
        shared = all(np.array_equal(lab, labels[0]) for lab in labels)
        draw = lambda n: rng.integers(0, n, size=(resamples, n))  # noqa: E731 - local shorthand
        idx_neg, idx_pos = draw(len(neg)), draw(len(pos))
        per_entry = []
        for lab, entry in zip(labels, entries):
            s = np.asarray(entry["scores"], dtype=float)
            if not shared:  # another test set: resample it on its own
                neg, pos = _strata(lab)
                idx_neg, idx_pos = draw(len(neg)), draw(len(pos))
            sampled = np.concatenate([s[neg][idx_neg], s[pos][idx_pos]], axis=1)
            per_entry.append(auroc_rows(sampled, len(neg)))
        class_stats.append(np.mean(per_entry, axis=0))
    if not class_stats:
        return None
    replicates = np.mean(class_stats, axis=0)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return float(low), float(high)
