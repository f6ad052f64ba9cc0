"""Independent references for the metric tests and the benchmark; they share no code with wmoe_clip.metrics.

- `sklearn_rank`: sklearn's AUROC and AP, and F1-max by the AdaCLIP / VAND-APRIL-GAN recipe (docs/METRICS.md §2.3).
- `brute_force_aupro`: the MVTec semantics spelled out (§3.1): explicit connected components with
  scipy.ndimage.label per image, every distinct score as a threshold, the polyline with (0, 0) and (1, 1),
  trapezoids up to the limit with linear interpolation there, divided by the limit. O(U * N): small inputs.
- `anomalyclip_loop`: the AnomalyCLIP / cflow-ad `cal_pro_score` procedure as docs/METRICS.md §3.2 describes it
  (200 uniform thresholds, skimage labelling per mask at every threshold, strict FPR < limit, min-max
  rescaled FPR, sklearn `auc`). Masks are counted as integers so that FPR denominators stay exact.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from skimage import measure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score


def sklearn_rank(labels, scores) -> dict[str, float]:
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores).ravel()
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    return {
        "auroc": roc_auc_score(labels, scores),
        "ap": average_precision_score(labels, scores),
        "f1_max": float(np.max(f1[np.isfinite(f1)])),
    }


def brute_force_aupro(masks: np.ndarray, maps: np.ndarray, limit: float = 0.3) -> float | None:
    masks = np.asarray(masks, dtype=bool)
    regions = []
    for i, mask in enumerate(masks):
        labelled, k = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
        regions += [(i, labelled == r) for r in range(1, k + 1)]
    normal = ~masks
    if not regions or not normal.any():
        return None
    fpr, pro = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        predicted = maps >= t
        fpr.append(np.count_nonzero(predicted & normal) / np.count_nonzero(normal))
        pro.append(float(np.mean([predicted[i][region].mean() for i, region in regions])))
    fpr.append(1.0)
    pro.append(1.0)
    area = 0.0
    for x0, x1, y0, y1 in zip(fpr[:-1], fpr[1:], pro[:-1], pro[1:]):
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
            continue
        if x0 < limit:
            y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_limit) / 2
        break
    return area / limit


def anomalyclip_loop(masks: np.ndarray, maps: np.ndarray, limit: float = 0.3, steps: int = 200) -> float | None:
    """None where the anchor raises or returns NaN (constant maps, fewer than two kept points)."""
    masks = np.asarray(masks, dtype=np.uint8)
    lo, hi = maps.min(), maps.max()
    if hi == lo:
        return None
    positive = np.zeros(maps.shape, dtype=bool)
    normal = 1 - masks
    fprs, pros = [], []
    for threshold in np.arange(lo, hi, (hi - lo) / steps):
        positive[...] = maps > threshold
        overlaps = []
        for pred, mask in zip(positive, masks):
            for region in measure.regionprops(measure.label(mask)):
                overlaps.append(pred[region.coords[:, 0], region.coords[:, 1]].sum() / region.area)
        fprs.append(np.logical_and(normal, positive).sum() / normal.sum())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # mean of no regions: NaN, as in the anchor
            pros.append(np.array(overlaps).mean())
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs < limit
    if np.count_nonzero(keep) < 2:
        return None
    kept = fprs[keep]
    if kept.max() == kept.min():
        return None
    value = auc((kept - kept.min()) / (kept.max() - kept.min()), pros[keep])
    return None if np.isnan(value) else float(value)
