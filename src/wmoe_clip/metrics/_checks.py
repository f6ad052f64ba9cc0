"""Input validation shared by the metric functions: one clear error naming the bad argument."""

from __future__ import annotations

import math

import numpy as np

from wmoe_clip.errors import WMoEError


class MetricInputError(WMoEError, ValueError):
    """Inputs a metric cannot be computed from: wrong shape, non-binary labels, NaN/inf scores, empty."""


def to_numpy(x, name: str) -> np.ndarray:
    """A numpy view of `x` (numpy array, torch tensor or sequence); torch half types become float32."""
    if type(x).__module__.startswith("torch"):
        x = x.detach()
        # numpy has no bfloat16, and float16 would merge nearly equal scores into ties (docs/METRICS.md §4.4).
        if x.is_floating_point() and x.element_size() < 4:
            x = x.float()
        x = x.cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"{name}: cannot be read as an array ({exc})") from exc


def scores_array(x, name: str) -> np.ndarray:
    """Finite, non-empty scores; float32/float64 are kept as they are (no copy), other types are widened."""
    a = to_numpy(x, name)
    if a.size == 0:
        raise MetricInputError(f"{name}: empty input; a metric needs at least one score")
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    elif a.dtype.kind in "biu":
        a = a.astype(np.float64)
    elif a.dtype.kind != "f":
        raise MetricInputError(f"{name}: scores must be real numbers, got dtype {a.dtype}")
    # min and max propagate NaN and expose ±inf without allocating a mask the size of the input.
    lo, hi = a.min(), a.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise MetricInputError(f"{name}: contains NaN or infinite values; pass finite scores")
    return a


def binary_array(x, name: str) -> np.ndarray:
    """Non-empty labels as a bool array; accepts bool or numbers equal to 0 or 1 (never thresholds)."""
    a = to_numpy(x, name)
    if a.size == 0:
        raise MetricInputError(f"{name}: empty input; a metric needs at least one label")
    if a.dtype == np.bool_:
        return a
    if a.dtype.kind not in "biuf":
        raise MetricInputError(f"{name}: labels must be bool or 0/1, got dtype {a.dtype}")
    if not np.all((a == 0) | (a == 1)):
        raise MetricInputError(f"{name}: labels must be binary (bool or 0/1); binarise masks before the metrics")
    return a != 0


def same_shape(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    if a.shape != b.shape:
        raise MetricInputError(f"{a_name} has shape {a.shape} but {b_name} has shape {b.shape}; they must match")


def image_stack(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """Validated (n, H, W) bool masks and float maps; a single (H, W) image or (n, 1, H, W) is reshaped."""
    masks = binary_array(masks, "masks")
    maps = scores_array(maps, "maps")
    same_shape(masks, "masks", maps, "maps")
    if masks.ndim == 2:
        masks, maps = masks[None], maps[None]
    elif masks.ndim == 4 and masks.shape[1] == 1:
        masks, maps = masks[:, 0], maps[:, 0]
    if masks.ndim != 3:
        raise MetricInputError(f"masks and maps must have shape (n, H, W), got {masks.shape}")
    return masks, maps


def fpr_limit_value(fpr_limit) -> float:
    try:
        limit = float(fpr_limit)
    except (TypeError, ValueError):
        limit = math.nan
    if not 0.0 < limit <= 1.0:
        raise MetricInputError(f"fpr_limit must lie in (0, 1], got {fpr_limit}")
    return limit
