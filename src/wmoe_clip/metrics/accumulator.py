"""Per-class accumulation of image scores and anomaly maps for the evaluation engine.

Usage (evaluation streams one class after the other)::

    acc = ClassMetricAccumulator(image=True, pixel=True, image_size=(518, 518), expected={"bottle": 83})
    for batch in loader:
        acc.add(batch["cls_name"], batch["label"], out.image_score, masks=batch["mask"], maps=smoothed_maps)
        if a class is complete:
            acc.finalize_class(cls)          # computes that class's metrics and frees its pixel arrays
    per_class = acc.results()               # {cls: {"n_images", "n_normal", "n_anomalous", "image", "pixel"}}
    means = acc.mean()                      # {"image": {metric: {"value", "n_classes"}}, "pixel": {...}}
    scores = acc.image_scores()             # {cls: {"labels": [...], "scores": [...]}} for the eval JSON

- `add` takes one batch (numpy or torch): `cls_names` (a sequence of B names, or one name for the whole
  batch), `labels` (B,) 0/1, `scores` (B,) image scores, and when `pixel=True` `masks` (B, H, W) 0/1 and
  `maps` (B, H, W) float; (B, 1, H, W) is accepted too. A batch may mix classes. With `pixel=False`,
  masks and maps are not needed and are ignored; with `image=False`, `scores` may be None. `masked`
  (B,) bool, optional (default all true), is false for an anomalous image whose mask is unknown (a
  user's dataset where only some defects were outlined): it counts in the image metrics and is left
  out of the pixel metrics, whose all-zero mask would score its defect as normal pixels; a class's
  result then says how many with `n_anomalous_without_mask`.
- Memory: per class still being filled, one float32 (capacity, H, W) map buffer and one bool mask buffer,
  preallocated to `expected[cls]` images when the engine knows the counts, otherwise started small and
  grown by half again when full. `finalize_class` computes the class (about 5 B per pixel of extra
  working memory, see `pixel.py`) and drops both buffers; image labels and scores (small) are kept.
- Results: metric values are Python floats in [0, 1], or None where the metric does not apply (one label
  only); levels switched off are absent. `mean()` is the plain mean over the classes where a metric
  applies, with the number of those classes (docs/METRICS.md §1.1, §1.3); value None when no class applies.
  That is ``undefined="omit"``, the default; ``undefined="zero"`` counts a class where the metric is
  undefined as 0 (AdaCLIP's and AA-CLIP's evaluation code) and the entry says how many (``n_zero``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from wmoe_clip.metrics._checks import MetricInputError, binary_array, fpr_limit_value, image_stack, scores_array
from wmoe_clip.metrics.pixel import PIXEL_METRICS, pixel_metrics_checked
from wmoe_clip.metrics.rank import RANK_METRICS, rank_metrics_sorted, split_sorted

UNDEFINED_RULES = ("omit", "zero")
_MIN_CAPACITY = 8
_GROWTH = 1.5


class _Rows:
    """Rows of one shape and dtype in a preallocated buffer, grown by copying when full."""

    def __init__(self, row_shape: tuple[int, ...], dtype, capacity: int) -> None:
        self._data = np.empty((capacity, *row_shape), dtype=dtype)
        self.n = 0

    def append(self, rows: np.ndarray) -> None:
        need = self.n + rows.shape[0]
        if need > self._data.shape[0]:
            grown = np.empty((max(need, math.ceil(self._data.shape[0] * _GROWTH)), *self._data.shape[1:]),
                             dtype=self._data.dtype)
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n : need] = rows
        self.n = need

    def view(self) -> np.ndarray:
        return self._data[: self.n]

    @property
    def nbytes(self) -> int:
        return self._data.nbytes


class _ClassState:
    def __init__(self, capacity: int, image_size: tuple[int, int] | None) -> None:
        self.labels = _Rows((), np.int8, capacity)
        self.scores = _Rows((), np.float64, capacity)
        self.maps = None if image_size is None else _Rows(image_size, np.float32, capacity)
        self.masks = None if image_size is None else _Rows(image_size, np.bool_, capacity)
        self.unmasked = 0
        self.result: dict | None = None


class ClassMetricAccumulator:
    """Collects a test set batch by batch and computes the metrics per class (see the module docstring)."""

    def __init__(
        self,
        image: bool = True,
        pixel: bool = True,
        image_size: tuple[int, int] | None = None,
        expected: Mapping[str, int] | None = None,
        fpr_limit: float = 0.3,
        undefined: str = "omit",
    ) -> None:
        if not (image or pixel):
            raise MetricInputError("image and pixel are both False; enable at least one metric level")
        if undefined not in UNDEFINED_RULES:
            raise MetricInputError(f"undefined must be one of {', '.join(UNDEFINED_RULES)}, got {undefined!r}")
        self.undefined = undefined
        self.image = image
        self.pixel = pixel
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.expected = dict(expected or {})
        self.fpr_limit = fpr_limit_value(fpr_limit)
        self._classes: dict[str, _ClassState] = {}

    def add(self, cls_names: Sequence[str] | str, labels, scores, masks=None, maps=None, masked=None) -> None:
        labels = binary_array(labels, "labels").reshape(-1)
        n = labels.size
        names = [cls_names] * n if isinstance(cls_names, str) else [str(c) for c in cls_names]
        if len(names) != n:
            raise MetricInputError(f"cls_names has {len(names)} entries but labels has {n}; give one per image")
        if scores is None:
            if self.image:
                raise MetricInputError("scores: required when image metrics are enabled")
            scores = np.full(n, np.nan)
        else:
            scores = scores_array(scores, "scores").reshape(-1)
            if scores.size != n:
                raise MetricInputError(f"scores has {scores.size} entries but labels has {n}; give one per image")
        if self.pixel:
            if masks is None or maps is None:
                raise MetricInputError("masks and maps: required when pixel metrics are enabled")
            masks, maps = image_stack(masks, maps)
            if masks.shape[0] != n:
                raise MetricInputError(f"masks and maps hold {masks.shape[0]} images but labels has {n}")
            if self.image_size is None:
                self.image_size = masks.shape[1:]
            elif masks.shape[1:] != self.image_size:
                raise MetricInputError(f"maps have size {masks.shape[1:]} but the accumulator holds {self.image_size}")
        masked = np.ones(n, dtype=bool) if masked is None else binary_array(masked, "masked").reshape(-1).astype(bool)
        if masked.size != n:
            raise MetricInputError(f"masked has {masked.size} entries but labels has {n}; give one per image")
        if (~masked & (labels == 0)).any():
            raise MetricInputError("masked: a normal image is false, but its mask (all normal) is known")
        groups = {cls: [i for i, name in enumerate(names) if name == cls] for cls in dict.fromkeys(names)}
        # Refuse the whole batch before storing any of it, so a caller can fix it and retry.
        for cls in groups:
            if cls in self._classes and self._classes[cls].result is not None:
                raise MetricInputError(f"cls_names: class {cls!r} was already finalised; add all its images first")
        for cls, idx in groups.items():
            rows = slice(None) if len(idx) == n else np.asarray(idx)
            state = self._state(cls, len(idx))
            state.labels.append(labels[rows])
            state.scores.append(scores[rows])
            if self.pixel:
                known = masked[idx]
                keep = rows if known.all() else np.asarray(idx)[known]
                state.masks.append(masks[keep])
                state.maps.append(maps[keep])
                state.unmasked += int((~known).sum())

    def _state(self, cls: str, n_new: int) -> _ClassState:
        state = self._classes.get(cls)
        if state is None:
            capacity = max(self.expected.get(cls, 0), n_new, _MIN_CAPACITY)
            state = self._classes[cls] = _ClassState(capacity, self.image_size if self.pixel else None)
        return state

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    @property
    def nbytes(self) -> int:
        """Bytes held in the buffers of classes not yet finalised."""
        return sum(
            rows.nbytes
            for state in self._classes.values()
            for rows in (state.labels, state.scores, state.maps, state.masks)
            if rows is not None
        )

    def finalize_class(self, cls: str) -> dict:
        """Compute one class's metrics, free its pixel buffers, and return its result."""
        if cls not in self._classes:
            raise MetricInputError(f"class {cls!r} has no images; known classes: {', '.join(self._classes)}")
        state = self._classes[cls]
        if state.result is not None:
            return state.result
        labels = state.labels.view().astype(bool)
        result: dict = {"n_images": int(labels.size), "n_normal": int(labels.size - labels.sum()),
                        "n_anomalous": int(labels.sum())}
        if self.image:
            result["image"] = rank_metrics_sorted(*split_sorted(labels, state.scores.view()))
        if self.pixel:
            if state.unmasked:
                result["n_anomalous_without_mask"] = state.unmasked
            result["pixel"] = pixel_metrics_checked(state.masks.view(), state.maps.view(), self.fpr_limit)
            state.masks = state.maps = None
        state.result = result
        return result

    def results(self) -> dict[str, dict]:
        """Per-class results in the order the classes first appeared; finalises any class still open."""
        return {cls: self.finalize_class(cls) for cls in self._classes}

    def mean(self) -> dict[str, dict[str, dict]]:
        """The macro mean of every metric over the classes where it applies (or, with ``undefined="zero"``,
        over every class, an undefined value counting as 0), with their number."""
        results = self.results()
        levels = [(lvl, names) for lvl, names, on in (("image", RANK_METRICS, self.image),
                                                      ("pixel", PIXEL_METRICS, self.pixel)) if on]
        out: dict[str, dict[str, dict]] = {}
        for level, names in levels:
            out[level] = {}
            for metric in names:
                values = [r[level][metric] for r in results.values() if r[level][metric] is not None]
                zeros = len(results) - len(values) if self.undefined == "zero" else 0
                n = len(values) + zeros
                out[level][metric] = {"value": math.fsum(values) / n if n else None, "n_classes": n}
                if self.undefined == "zero":
                    out[level][metric]["n_zero"] = zeros
        return out

    def image_scores(self) -> dict[str, dict[str, list]]:
        """Image labels and scores per class, as lists for the eval JSON (scores None where not given)."""
        out = {}
        for cls, state in self._classes.items():
            scores = state.scores.view()
            out[cls] = {"labels": [int(v) for v in state.labels.view()],
                        "scores": [None if math.isnan(v) else float(v) for v in scores]}
        return out
