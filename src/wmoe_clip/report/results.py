"""Read a results folder: evaluation JSONs (format ``wmoe-clip/eval``) and training histories.

The layout is ARCHITECTURE.md's ``eval/{source}/{target}/{variant}/seed{seed}.json`` and
``train/{source}/{variant}/seed{seed}/history.json``; anything else under the folder is ignored, so
a paper run and a demo run nested below it never mix. A file that is not a valid evaluation is an
error naming it: a report must not silently drop a result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..data.registry import CUSTOM_DOMAIN
from ..engine.results import FORMAT as EVAL_FORMAT
from ..engine.results import FORMAT_VERSION as EVAL_VERSION
from ..engine.results import validate_eval
from ..errors import WMoEError
_SEED = re.compile(r"^seed(\d+)$")


@dataclass
class Evaluation:
    path: Path
    source: str
    target: str
    variant: str
    seed: int
    data: dict[str, Any]

    @property
    def synthetic(self) -> bool:
        return bool(self.data.get("synthetic", False))

    @property
    def custom(self) -> bool:
        """Evaluated on a user's own dataset (``prepare folder``), not one of the 14 benchmarks."""
        return self.data["dataset"].get("domain") == CUSTOM_DOMAIN

    @property
    def protocol_variant(self) -> str | None:
        return self.data["dataset"].get("protocol_variant")

    @property
    def class_coverage(self) -> tuple[int, int] | None:
        """(classes evaluated, classes in the registry) when the JSON records both, else None."""
        n = self.data["dataset"].get("n_registry_classes")
        return None if n is None else (len(self.data["per_class"]), n)

    @property
    def figure_path(self) -> Path | None:
        name = self.data.get("figure")
        if not name:
            return None
        path = self.path.parent / name
        return path if path.is_file() else None


@dataclass
class Training:
    source: str
    variant: str
    seed: int
    history: Any
    run: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    root: Path
    evaluations: list[Evaluation]
    trainings: list[Training]

    @property
    def synthetic(self) -> bool:
        return any(e.synthetic for e in self.evaluations)

    def tidy(self) -> pd.DataFrame:
        """One row per (source, target, variant, seed, level, metric) mean value, in [0, 1]."""
        rows = []
        for e in self.evaluations:
            for level, metrics in (e.data.get("mean") or {}).items():
                for metric, entry in (metrics or {}).items():
                    value = entry.get("value") if isinstance(entry, dict) else entry
                    if value is None:
                        continue
                    rows.append((e.source, e.target, e.variant, e.seed, level, metric, float(value)))
        columns = ["source", "target", "variant", "seed", "level", "metric", "value"]
        return pd.DataFrame(rows, columns=columns)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WMoEError(f"{path}: not valid JSON ({exc}); delete it and rerun the job that writes it") from None


def _seed(name: str, path: Path) -> int:
    match = _SEED.match(name)
    if not match:
        raise WMoEError(f"{path}: expected a name seed<N>, as in the results layout of ARCHITECTURE.md")
    return int(match.group(1))


def load_evaluation(path: Path) -> Evaluation:
    data = _load_json(path)
    if not isinstance(data, dict) or data.get("format") != EVAL_FORMAT:
        raise WMoEError(f"{path}: not a wmoe-clip evaluation (expected \"format\": \"{EVAL_FORMAT}\")")
    if data.get("format_version") != EVAL_VERSION:
        raise WMoEError(
            f"{path}: evaluation format version {data.get('format_version')!r}, this report reads "
            f"version {EVAL_VERSION}; rerun the evaluation with this wmoe-clip"
        )
    # The same schema check the engine applies before writing, so a hand-edited file cannot slip in.
    validate_eval(data, str(path))
    variant_dir = path.parent
    target_dir = variant_dir.parent
    source_dir = target_dir.parent
    from_path = (source_dir.name, target_dir.name, variant_dir.name, _seed(path.stem, path))
    from_json = (data.get("source"), data.get("target"), data.get("variant"), data.get("seed"))
    if from_path != from_json:
        raise WMoEError(
            f"{path}: its fields (source, target, variant, seed) = {from_json} disagree with its "
            f"place in the results layout {from_path}; move it or rerun the evaluation"
        )
    return Evaluation(path, *from_path, data)


def load_results(root: str | Path) -> Results:
    root = Path(root)
    if not root.is_dir():
        raise WMoEError(f"results folder {root} does not exist; run the workflow first (snakemake)")
    evaluations = [load_evaluation(p) for p in sorted(root.glob("eval/*/*/*/seed*.json"))]
    trainings = []
    for hist in sorted(root.glob("train/*/*/seed*/history.json")):
        run_file = hist.parent / "run.json"
        trainings.append(
            Training(
                source=hist.parent.parent.parent.name,
                variant=hist.parent.parent.name,
                seed=_seed(hist.parent.name, hist),
                history=_load_json(hist),
                run=_load_json(run_file) if run_file.is_file() else {},
            )
        )
    return Results(root, evaluations, trainings)
