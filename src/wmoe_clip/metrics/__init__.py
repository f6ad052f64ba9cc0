"""Exact, fast anomaly-detection metrics (docs/METRICS.md): image and pixel AUROC / AP / F1-max, AUPRO.

Values lie in [0, 1] (tables multiply by 100); a metric that does not apply to a class is None.
"""

from wmoe_clip.metrics._checks import MetricInputError
from wmoe_clip.metrics.accumulator import ClassMetricAccumulator
from wmoe_clip.metrics.aupro import VARIANTS as AUPRO_VARIANTS
from wmoe_clip.metrics.aupro import Regions, aupro, label_regions
from wmoe_clip.metrics.pixel import PIXEL_METRICS, pixel_metrics
from wmoe_clip.metrics.rank import RANK_METRICS, image_metrics, rank_metrics

IMAGE_METRICS = RANK_METRICS

__all__ = [
    "AUPRO_VARIANTS",
    "IMAGE_METRICS",
    "PIXEL_METRICS",
    "ClassMetricAccumulator",
    "MetricInputError",
    "Regions",
    "aupro",
    "image_metrics",
    "label_regions",
    "pixel_metrics",
    "rank_metrics",
]
