"""Pixel-level metrics of one class: AUROC, AP, F1-max and both AUPRO variants from one pair of sorts.

The pixels of all the class's images form one pool (docs/METRICS.md §1.1). The maps are split by the GT into
a float32 copy of the normal and of the anomalous scores. The normal copy is sorted once, in place, and
serves the rank metrics and both AUPRO variants; the anomalous scores are sorted with their region ids.
Extra memory: about 5 B per pixel plus ~40 B per anomalous pixel; no float64 copy of the maps and no
argsort of all pixels.
"""

from __future__ import annotations

import numpy as np

from wmoe_clip.metrics._checks import fpr_limit_value, image_stack
from wmoe_clip.metrics.aupro import aupro_anomalyclip_sorted, aupro_exact_sorted, sorted_anomalous
from wmoe_clip.metrics.rank import rank_metrics_sorted

PIXEL_METRICS = ("auroc", "ap", "f1_max", "aupro", "aupro_anomalyclip")


def pixel_metrics_checked(masks: np.ndarray, maps: np.ndarray, limit: float) -> dict[str, float | None]:
    """`pixel_metrics` on inputs already validated: bool masks and finite float maps of shape (n, H, W)."""
    pos, regions = sorted_anomalous(masks, maps)
    neg = maps[~masks]
    neg.sort()
    return {
        **rank_metrics_sorted(pos, neg),
        "aupro": aupro_exact_sorted(pos, regions, neg, limit),
        "aupro_anomalyclip": aupro_anomalyclip_sorted(pos, regions, neg, limit),
    }


def pixel_metrics(masks, maps, fpr_limit: float = 0.3) -> dict[str, float | None]:
    """Pixel AUROC, AP, F1-max, exact AUPRO and AnomalyCLIP AUPRO of one class, each in [0, 1] or None.

    `masks`: (n, H, W) bool or 0/1 GT; `maps`: (n, H, W) float anomaly maps (numpy or torch).
    None where a metric does not apply: no anomalous pixel or no normal pixel (and for the AnomalyCLIP
    variant, where its anchor fails).
    """
    masks, maps = image_stack(masks, maps)
    return pixel_metrics_checked(masks, maps, fpr_limit_value(fpr_limit))
