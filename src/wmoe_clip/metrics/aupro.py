"""AUPRO, exact (official MVTec semantics) and AnomalyCLIP-compatible, without threshold loops.

Definitions are in docs/METRICS.md §3; the algorithms follow §4.2-§4.3. Per class: regions are the 8-connected
GT components of each image (never spanning two images); each of the K regions weighs 1/K whatever its
size, so an anomalous pixel p of region R carries w_p = 1/(K |R|); FPR counts the normal pixels of all
images, defect-free ones included.

**Exact ("exact", the project's `aupro`).** The MVTec polyline has one vertex (FPR(>=t), PRO(>=t)) per
distinct score t, ties merged, so a tie between normal and anomalous pixels is a diagonal segment. Its
area up to the limit L is the sum over anomalous pixels of w_p times the area under that pixel's own
detection curve: with a = #(normals > s_p)/|N0| and b = #(normals >= s_p)/|N0|, the pixel counts 0 for
FPR < a, 1 for FPR > b and rises linearly in between (the diagonal). Integrated to L this is 0 when
L <= a, L - (a + b)/2 when b <= L, and (L - a)^2 / (2 (b - a)) otherwise, which is MVTec's linear
interpolation of PRO at L. The sum equals §4.2's trapezoid sum over distinct normal scores term by term;
evaluating it per anomalous pixel needs no walk over the normal scores, only a binary search of each
anomalous score among the normals above the limit: the top floor(L |N0|) + 1 normal scores (selected
with a partition, or the tail of an already sorted array). AUPRO = area / L.

**AnomalyCLIP ("anomalyclip").** cflow-ad's `cal_pro_score` as AnomalyCLIP runs it: thresholds
`numpy.arange(min, max, (max - min) / 200)` in the maps' dtype, positives `score > threshold`, points with
FPR < L kept, their FPRs min-max rescaled, trapezoid of PRO over them. Here each threshold's FPR is one
binary search into the sorted normal scores and its PRO comes from integer counts of the anomalous pixels
above each threshold, grouped by region size. Not rank-invariant; n/a (None) where the anchor fails
(constant maps, fewer than two kept points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from wmoe_clip.metrics._checks import MetricInputError, fpr_limit_value, image_stack

VARIANTS = ("exact", "anomalyclip")
ANOMALYCLIP_STEPS = 200
# 8-connectivity inside one image (docs/METRICS.md §3.1): a 3x3 all-ones structuring element.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Regions:
    """The GT regions of a class: the region index of every anomalous pixel and the size of every region."""

    ids: np.ndarray  # int32, one per anomalous pixel, in the order of the anomalous scores it goes with
    sizes: np.ndarray  # int64, pixel count of each region

    @property
    def count(self) -> int:
        return int(self.sizes.size)

    def pixel_weights(self) -> np.ndarray:
        """w_p = 1 / (K |R(p)|) in float64, so that every region weighs 1/K and the weights sum to 1."""
        return (1.0 / (self.count * self.sizes.astype(np.float64)))[self.ids]


def label_regions(masks: np.ndarray) -> Regions:
    """8-connected components of each (H, W) mask of a bool (n, H, W) stack, labelled image by image.

    The ids follow the C order of the True pixels, the order of `maps[masks]`.
    """
    ids = np.empty(int(np.count_nonzero(masks)), dtype=np.int32)
    filled = 0
    n_regions = 0
    for mask in masks:
        if not mask.any():
            continue
        labels, k = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        region_of_pixel = labels[mask]
        ids[filled : filled + region_of_pixel.size] = region_of_pixel + (n_regions - 1)
        filled += region_of_pixel.size
        n_regions += k
    return Regions(ids=ids, sizes=np.bincount(ids, minlength=n_regions).astype(np.int64))


def sorted_anomalous(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, Regions]:
    """The anomalous scores sorted ascending and their regions in the same order.

    Sorted keys make the binary searches into the normal scores cache-friendly (about 10x faster).
    """
    regions = label_regions(masks)
    pos = maps[masks]
    order = np.argsort(pos)
    return pos[order], Regions(ids=regions.ids[order], sizes=regions.sizes)


def _exact_area(pos, weights, top, ties_below, n_neg, limit) -> float:
    """Exact AUPRO from the anomalous scores and weights and the top normal scores sorted ascending.

    `top` holds every normal score above its first element and at least floor(limit*n_neg) + 1 scores;
    `ties_below` counts the normal scores equal to top[0] that it leaves out.
    """
    n_top = top.size
    above = n_top - np.searchsorted(top, pos, side="right")
    at_or_above = n_top - np.searchsorted(top, pos, side="left")
    if ties_below:
        at_or_above += ties_below * (pos <= top[0])
    # A score below top[0] gets above = n_top >= limit*n_neg, hence a >= limit and no area: as it should.
    a = above / n_neg
    b = at_or_above / n_neg
    area = np.zeros_like(a)
    whole = b <= limit
    area[whole] = limit - (a[whole] + b[whole]) / 2
    partial = (a < limit) & ~whole
    area[partial] = (limit - a[partial]) ** 2 / (2 * (b[partial] - a[partial]))
    return float(np.dot(weights, area) / limit)


def aupro_exact_sorted(pos: np.ndarray, regions: Regions, neg_sorted: np.ndarray, limit: float) -> float | None:
    """Exact AUPRO given the anomalous scores with their regions and all the normal scores sorted ascending."""
    if regions.count == 0 or neg_sorted.size == 0:
        return None
    return _exact_area(pos, regions.pixel_weights(), neg_sorted, 0, neg_sorted.size, limit)


def _exact_unsorted(pos: np.ndarray, regions: Regions, neg: np.ndarray, limit: float) -> float | None:
    """Exact AUPRO from unsorted normal scores: select the top ones in O(N) and sort only those (in place)."""
    if regions.count == 0 or neg.size == 0:
        return None
    n_neg = neg.size
    cut = n_neg - min(math.floor(limit * n_neg) + 1, n_neg)
    ties_below = 0
    if cut > 0:
        neg.partition(cut)
        ties_below = int(np.count_nonzero(neg[:cut] == neg[cut]))
    top = neg[cut:]
    top.sort()
    return _exact_area(pos, regions.pixel_weights(), top, ties_below, n_neg, limit)


def aupro_anomalyclip_sorted(
    pos: np.ndarray, regions: Regions, neg_sorted: np.ndarray, limit: float, steps: int = ANOMALYCLIP_STEPS
) -> float | None:
    """AnomalyCLIP-compatible AUPRO given the anomalous scores and all normal scores sorted ascending."""
    n_neg = neg_sorted.size
    if regions.count == 0 or n_neg == 0:
        return None
    # numpy scalars in the maps' dtype, so the grid (and its occasional extra point) is the anchor's.
    lo = min(neg_sorted[0], pos.min())
    hi = max(neg_sorted[-1], pos.max())
    if hi == lo:
        return None  # the anchor's arange fails on a constant map
    grid = np.arange(lo, hi, (hi - lo) / steps)
    fpr = (n_neg - np.searchsorted(neg_sorted, grid, side="right")) / n_neg
    keep = fpr < limit
    if np.count_nonzero(keep) < 2:
        return None
    # Pixel p is positive at grid[i] exactly when i < k_p, the number of thresholds below its score.
    k = np.searchsorted(grid, pos, side="left")
    size_values, size_of_region = np.unique(regions.sizes, return_inverse=True)
    n_cols = grid.size + 1
    counts = np.bincount(size_of_region[regions.ids] * n_cols + k, minlength=size_values.size * n_cols)
    counts = counts.reshape(size_values.size, n_cols)
    above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]  # pixels with score > grid[i], per size
    pro = (above / size_values[:, None]).sum(axis=0) / regions.count
    x, y = fpr[keep], pro[keep]
    x_min, x_max = x.min(), x.max()
    if x_max == x_min:
        return None  # the anchor's rescaling divides by zero here
    x = (x - x_min) / (x_max - x_min)
    # The kept FPRs decrease along the grid; sklearn's auc then negates the trapezoid (+ 0.0: no -0.0).
    return float(-np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0)) + 0.0


def aupro(masks, maps, fpr_limit: float = 0.3, variant: str = "exact") -> float | None:
    """AUPRO of one class: `masks` (n, H, W) bool or 0/1, `maps` (n, H, W) float, in [0, 1] or None (n/a).

    variant "exact" is the official MVTec value; "anomalyclip" reproduces the AnomalyCLIP-lineage number.
    None when the class has no GT region or no normal pixel, or where the anomalyclip anchor fails.
    """
    if variant not in VARIANTS:
        raise MetricInputError(f"variant must be one of {VARIANTS}, got {variant!r}")
    masks, maps = image_stack(masks, maps)
    limit = fpr_limit_value(fpr_limit)
    pos, regions = sorted_anomalous(masks, maps)
    neg = maps[~masks]
    if variant == "exact":
        return _exact_unsorted(pos, regions, neg, limit)
    neg.sort()
    return aupro_anomalyclip_sorted(pos, regions, neg, limit)
