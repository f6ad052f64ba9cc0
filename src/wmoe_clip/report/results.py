"""Read a results folder: evaluation JSONs (format ``wmoe-clip/eval``) and training histories.

The layout is the protocol's (``wmoe_clip.plan``): ``eval/{source}/{target}/{run}/seed{seed}.json`` and
``train/{source}/{run}/seed{seed}/history.json``, the run being a WMoE-CLIP variant or another method's
name (a training-free method's source is ``none``); anything else under the folder is ignored, so
a paper run and a demo run nested below it never mix. A file that is not a valid evaluation (NaN,
means that disagree with their per-class values included) is an error naming it: a report must not
silently drop or misreport a result. A folder without any evaluation is refused: a report of dashes
is never mistaken for a finished one.
"""

from __future__ import annotations

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
from ..io import read_json
from ..model import registry
from ..plan import EVAL_JSON, HISTORY, RUN_RECORD, fields, glob

_SEED = re.compile(r"^\d+$")
# The method of files written before there were several; its runs are its Table 2 variants.
DEFAULT_METHOD = "wmoe_clip"


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
    def method(self) -> str:
        """The method: the JSON's ``method``; in files from before that field, WMoE-CLIP for its Table 2
        variants, else the run name, which is the method's own name for every other method (the
        results layout of ARCHITECTURE.md)."""
        return self.data.get("method") or (DEFAULT_METHOD if self.variant in registry.get(DEFAULT_METHOD).variants
                                             else self.variant)

    @property
    def custom(self) -> bool:
        """Evaluated on a user's own dataset (``prepare folder``), not one of the 14 benchmarks."""
        return self.data["dataset"].get("domain") == CUSTOM_DOMAIN

    @property
    def protocol(self) -> str | None:
        """The target's registry protocol (``protocol_variant`` in files written before the rename)."""
        dataset = self.data["dataset"]
        return dataset.get("protocol", dataset.get("protocol_variant"))

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
        return any(e.synthetic for e in self.evaluations) or any(t.run.get("synthetic") for t in self.trainings)

    @property
    def all_synthetic(self) -> bool:
        """Every evaluation and every training ran on wmoe-clip synth stand-ins."""
        return all(e.synthetic for e in self.evaluations) and all(t.run.get("synthetic") for t in self.trainings)

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


def _placeholders(pattern: str) -> str:
    """A path pattern as a reader writes it: ``{run}`` as ``<run>``."""
    return re.sub(r"{(\w+)}", r"<\1>", pattern)


def _load_json(path: Path) -> Any:
    try:
        return read_json(path)
    except ValueError as exc:  # invalid JSON, or NaN / Infinity
        raise WMoEError(f"{path}: not valid JSON ({exc}); delete it and rerun the job that writes it") from None


def _place(pattern: str, path: Path, root: Path) -> dict[str, str]:
    """The layout fields of ``path`` (a match of ``glob(pattern)`` under ``root``), its seed a number."""
    found = fields(pattern, path.relative_to(root).as_posix())
    if found is None or not _SEED.match(found["seed"]):
        raise WMoEError(f"{path}: expected {pattern} under {root}, the seed a number, as in the results layout")
    return found


def load_evaluation(path: Path, root: Path) -> Evaluation:
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
    place = _place(EVAL_JSON, path, root)
    from_path = (place["source"], place["target"], place["run"], int(place["seed"]))
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
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise WMoEError(f"results folder {root} {what}; give the workflow's results folder, e.g. results")
    paths = sorted(root.glob(glob(EVAL_JSON)))
    if not paths:
        entries = sorted(p.name for p in root.iterdir())
        holds = f"it holds {', '.join(entries[:8])}{' ...' if len(entries) > 8 else ''}" if entries else "it is empty"
        raise WMoEError(
            f"results folder {root} holds no evaluation ({holds}); expected files "
            f"{root}/{_placeholders(EVAL_JSON)} as the workflow writes them: give the "
            "workflow's results folder (e.g. results or results/demo) once evaluations have run"
        )
    evaluations = [load_evaluation(p, root) for p in paths]
    trainings = []
    for hist in sorted(root.glob(glob(HISTORY))):
        place = _place(HISTORY, hist, root)
        run_file = root / RUN_RECORD.format(**place)
        trainings.append(
            Training(
                source=place["source"],
                variant=place["run"],
                seed=int(place["seed"]),
                history=_load_json(hist),
                run=_load_json(run_file) if run_file.is_file() else {},
            )
        )
    return Results(root, evaluations, trainings)
