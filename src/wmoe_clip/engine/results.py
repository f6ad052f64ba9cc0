"""The evaluation JSON (format ``wmoe-clip/eval``, version 1): building, validating, writing.

The format is ARCHITECTURE.md's "Evaluation JSON"; its machine-readable definition is
``wmoe_clip/schemas/eval.schema.json``, and every file is validated against it before it is written,
so a report never reads a result this code could not have produced. Beyond the schema, the checks
refuse NaN and infinities anywhere and recompute every mean from the per-class values it summarises
(``MEAN_TOLERANCE``), so a hand-edited or damaged number cannot reach a table.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import WMoEError
from ..io import read_json, write_json

FORMAT = "wmoe-clip/eval"
FORMAT_VERSION = 1
# A mean and the macro mean of its per-class values may differ by rounding only.
MEAN_TOLERANCE = 1e-6


@functools.lru_cache(maxsize=1)
def eval_schema() -> dict[str, Any]:
    return json.loads(resources.files("wmoe_clip").joinpath("schemas/eval.schema.json").read_text())


def _non_finite(obj: Any, at: str = "") -> list[str]:
    """Places (``a/b/0``) of NaN and ±Infinity in a JSON-like document."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [at or "(top level)"]
    if isinstance(obj, Mapping):
        return [p for k, v in obj.items() for p in _non_finite(v, f"{at}/{k}" if at else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in _non_finite(v, f"{at}/{i}" if at else str(i))]
    return []


def _mean_problems(doc: Mapping[str, Any]) -> list[str]:
    """Means that are not the macro mean of per_class: over the classes where the metric applies, or over
    every class with an undefined value as 0 when the entry counts such classes (``n_zero``)."""
    problems = []
    for level, metrics in doc["mean"].items():
        for metric, entry in metrics.items():
            values = [r[level][metric] for r in doc["per_class"].values()
                      if level in r and metric in r[level] and r[level][metric] is not None]
            if "n_zero" in entry:  # eval.undefined_metric zero: every class, an undefined value as 0
                values += [0.0] * sum(1 for r in doc["per_class"].values()
                                      if level in r and metric in r[level] and r[level][metric] is None)
            expected = math.fsum(values) / len(values) if values else None
            value, n = entry["value"], entry["n_classes"]
            agrees = (value is None) if expected is None else (
                value is not None and abs(value - expected) <= MEAN_TOLERANCE)
            if not agrees or n != len(values):
                problems.append(f"mean/{level}/{metric} is {value} over {n} classes, but the per-class values "
                                f"give {expected} over {len(values)}")
    return problems


def validate_eval(doc: Mapping[str, Any], where: str = "evaluation") -> None:
    """Raise ``WMoEError`` naming the first place where ``doc`` breaks the schema or the format's rules."""
    import jsonschema

    bad = _non_finite(doc)
    if bad:
        raise WMoEError(f"{where}: not a number at {', '.join(bad[:5])}: an evaluation holds finite values only")
    validator = jsonschema.Draft202012Validator(eval_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        at = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise WMoEError(f"{where}: does not follow the eval format at {at}: {err.message}")
    problems = []
    levels = [lvl for lvl in ("image", "pixel") if doc["dataset"][f"{lvl}_metrics"]]
    for cls, res in doc["per_class"].items():
        if res["n_images"] != res["n_normal"] + res["n_anomalous"]:
            problems.append(f"per_class/{cls}: n_images is not n_normal + n_anomalous")
        if sorted(k for k in res if k in ("image", "pixel")) != levels:
            problems.append(f"per_class/{cls}: levels differ from the dataset's ({', '.join(levels)})")
    if sorted(doc["mean"]) != levels:
        problems.append(f"mean: levels differ from the dataset's ({', '.join(levels)})")
    evaluated = doc["dataset"].get("classes_evaluated")
    if evaluated is not None and sorted(evaluated) != sorted(doc["per_class"]):
        problems.append("dataset/classes_evaluated differs from the classes of per_class")
    for name, part in doc.get("score_parts", {}).items():
        if "image" not in levels or part["per_class"].keys() != doc["per_class"].keys():
            problems.append(f"score_parts/{name}: needs image metrics and the classes of per_class")
    counts = doc["counts"]
    if counts["n_classes"] != len(doc["per_class"]):
        problems.append("counts/n_classes differs from the number of classes in per_class")
    for key in ("n_images", "n_normal", "n_anomalous"):
        if counts[key] != sum(r[key] for r in doc["per_class"].values()):
            problems.append(f"counts/{key} is not the sum over classes")
    problems += _mean_problems(doc)
    if problems:
        raise WMoEError(f"{where}: " + "; ".join(problems))


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_eval(
    *,
    source: str | None,
    target: str,
    method: str,
    variant: str,
    seed: int,
    synthetic: bool,
    dataset: Mapping[str, Any],
    per_class: Mapping[str, Mapping[str, Any]],
    mean: Mapping[str, Any],
    image_scores: Mapping[str, Mapping[str, list]],
    checkpoint: str | os.PathLike,
    config: Mapping[str, Any],
    train_run_id: str | None,
    mlflow_run_id: str | None,
    software: Mapping[str, Any],
    timings: Mapping[str, Any],
    figure: str | None,
    score_parts: Mapping[str, Any] | None = None,
    zero_shot: bool | None = None,
    tracking: Mapping[str, Any] | None = None,
    encoder: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The evaluation document from the metrics accumulator's ``results()``, ``mean()`` and ``image_scores()``;
    ``score_parts`` (optional, image-level targets) from ``evaluate.ScoreParts.results()``; ``encoder``
    (optional): the frozen-encoder pass the scores came from."""
    counts = {k: sum(int(r[k]) for r in per_class.values()) for k in ("n_images", "n_normal", "n_anomalous")}
    unmasked = sum(r.get("n_anomalous_without_mask", 0) for r in per_class.values())
    if unmasked:
        counts["n_anomalous_without_mask"] = unmasked
    counts["n_classes"] = len(per_class)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": source,
        "target": target,
        "method": method,
        "variant": variant,
        "seed": int(seed),
        "synthetic": bool(synthetic),
        "dataset": dict(dataset),
        "per_class": {k: dict(v) for k, v in per_class.items()},
        "mean": dict(mean),
        "image_scores": {k: dict(v) for k, v in image_scores.items()},
        "counts": counts,
        "checkpoint": {"path": str(checkpoint), "sha256": file_sha256(checkpoint)},
        "config": dict(config),
        "train_run_id": train_run_id,
        "mlflow_run_id": mlflow_run_id,
        "software": dict(software),
        "timings": dict(timings),
        "figure": figure,
        "zero_shot": zero_shot,
        "tracking": dict(tracking) if tracking is not None else None,
    }
    if score_parts is not None:
        doc["score_parts"] = {k: dict(v) for k, v in score_parts.items()}
    if encoder is not None:
        doc["encoder"] = dict(encoder)
    return doc


def write_eval(path: str | os.PathLike, doc: Mapping[str, Any]) -> None:
    """Validate and write atomically: an invalid document is never left where a report would read it."""
    validate_eval(doc, str(path))
    write_json(path, doc)


def load_eval(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        doc = read_json(path)
    except (OSError, ValueError) as exc:
        raise WMoEError(f"{path}: cannot read the evaluation ({exc})") from None
    validate_eval(doc, str(path))
    return doc
