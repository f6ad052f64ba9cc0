"""The paper's Table 1 and Table 2 as data (``config/paper_results.yaml``), checked on load.

The same file's ``references:`` name the published source of each method we run that has no column
in the paper's Table 1 (the ``clip`` baseline): where its numbers come from, and those numbers where
they were transcribed (a reference may report fewer metrics than the paper's tuples).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import WMoEError
from ..model import registry

DEFAULT_PATH = Path("config/paper_results.yaml")
LEVELS = ("image", "pixel")
# Metrics of an evaluation JSON that a reference may report (the paper's PRO is aupro_anomalyclip).
_COMPARABLE = {"image": {"auroc", "ap", "f1_max"}, "pixel": {"auroc", "ap", "f1_max", "aupro_anomalyclip"}}


@dataclass(frozen=True)
class Method:
    key: str
    name: str
    venue: str


@dataclass(frozen=True)
class PaperDataset:
    key: str
    display_name: str
    domain: str
    # level -> method key -> values in the order of PaperResults.metrics[level] (percent)
    values: dict[str, dict[str, list[float]]]


@dataclass(frozen=True)
class AblationRow:
    variant: str
    switches: tuple[bool, bool, bool]  # CTDS, WCMA, SA-MoE
    values: dict[str, dict[str, float]]  # dataset -> level -> percent


@dataclass(frozen=True)
class Reference:
    """Published numbers of a method without a column in the paper's Table 1 (``references.<key>``)."""

    key: str
    name: str
    description: str
    source: dict[str, Any]  # title, venue, arxiv, location
    # level -> metric keys that ``values`` give, in order (a subset of the evaluation's metrics)
    metrics: dict[str, list[str]]
    values: dict[str, dict[str, list[float]]]  # dataset -> level -> percent
    note: str  # which datasets are left out, or why no number is recorded

    def citation(self) -> str:
        s = self.source
        return f"{s['title']} ({s['venue']}, arXiv:{s['arxiv']}), {s['location']}"

    def value(self, dataset: str, level: str, metric: str) -> float | None:
        values = self.values.get(dataset, {}).get(level)
        if values is None or metric not in self.metrics.get(level, []):
            return None
        return values[self.metrics[level].index(metric)]


@dataclass(frozen=True)
class PaperResults:
    path: Path
    source: dict[str, Any]
    table1_location: str
    table1_caption: str
    metrics: dict[str, list[str]]
    methods: list[Method]
    paper_method: str
    main_variant: str
    datasets: list[PaperDataset]
    table2_location: str
    table2_caption: str
    table2_metrics: dict[str, str]
    table2_datasets: list[str]
    ablation: list[AblationRow]
    references: list[Reference] = field(default_factory=list)

    def method_name(self, key: str) -> str:
        """Display name of a method: the paper's column, else its reference, else the method registry's
        display name, else the key itself."""
        names = {m.key: m.name for m in self.methods} | {r.key: r.name for r in self.references}
        if key in names:
            return names[key]
        return registry.METHODS[key].display_name if key in registry.METHODS else key

    def reference(self, key: str) -> Reference | None:
        return next((r for r in self.references if r.key == key), None)

    def published(self, method: str, dataset: str, level: str, metric: str) -> float | None:
        """The published number of ``method`` for one cell (percent): the paper's Table 1 column of
        that method, else its reference; None when neither gives it."""
        entry = next((d for d in self.datasets if d.key == dataset), None)
        if any(m.key == method for m in self.methods):
            values = entry.values.get(level, {}).get(method) if entry else None
            return None if values is None else values[self.metrics[level].index(metric)]
        ref = self.reference(method)
        return None if ref is None else ref.value(dataset, level, metric)

    def citation(self) -> str:
        page = self.source.get("page")
        where = f", p. {page}" if page else ""
        return f"arXiv:{self.source['arxiv']}{where}"


def load_paper_results(path: str | Path = DEFAULT_PATH) -> PaperResults:
    path = Path(path)
    if not path.is_file():
        raise WMoEError(
            f"paper results {path} not found; run from the repository root or pass --paper "
            "config/paper_results.yaml"
        )
    try:
        raw = yaml.safe_load(path.read_text())
        t1, t2 = raw["table1"], raw["table2"]
        metrics = {level: list(t1["metrics"][level]) for level in LEVELS}
        methods = [Method(m["key"], m["name"], str(m["venue"])) for m in t1["methods"]]
        keys = {m.key for m in methods}
        datasets = []
        for key, entry in t1["datasets"].items():
            values = {level: entry[level] for level in LEVELS if level in entry}
            for level, per_method in values.items():
                if set(per_method) != keys or any(len(v) != len(metrics[level]) for v in per_method.values()):
                    raise ValueError(f"table1.datasets.{key}.{level} must give {len(metrics[level])} values for each of {sorted(keys)}")
            datasets.append(PaperDataset(key, entry["display_name"], entry["domain"], values))
        rows = [
            AblationRow(
                r["variant"],
                (bool(r["ctds"]), bool(r["wcma"]), bool(r["sa_moe"])),
                {d: {level: float(r[d][level]) for level in LEVELS} for d in t2["datasets"]},
            )
            for r in t2["rows"]
        ]
        return PaperResults(
            path=path,
            source=raw["source"],
            table1_location=t1["location"],
            table1_caption=t1["caption"],
            metrics=metrics,
            methods=methods,
            paper_method=t1["paper_method"],
            main_variant=t1["main_variant"],
            datasets=datasets,
            table2_location=t2["location"],
            table2_caption=t2["caption"],
            table2_metrics=dict(t2["metrics"]),
            table2_datasets=list(t2["datasets"]),
            ablation=rows,
            references=_references(raw.get("references") or {}, keys, {d.key for d in datasets}),
        )
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise WMoEError(f"{path}: malformed paper results ({exc!r})") from None


def _references(raw: dict[str, Any], paper_methods: set[str], datasets: set[str]) -> list[Reference]:
    refs = []
    for key, entry in raw.items():
        if key in paper_methods:
            raise ValueError(f"references.{key} duplicates the paper's column table1.methods {key}")
        metrics = {level: list(entry["metrics"][level]) for level in LEVELS if level in entry["metrics"]}
        for level, names in metrics.items():
            if not set(names) <= _COMPARABLE[level]:
                raise ValueError(f"references.{key}.metrics.{level} must be among {sorted(_COMPARABLE[level])}")
        values = entry["datasets"] or {}
        for dataset, levels in values.items():
            if dataset not in datasets:
                raise ValueError(f"references.{key}.datasets.{dataset} is not a dataset of table1")
            for level, numbers in levels.items():
                if level not in metrics or len(numbers) != len(metrics[level]):
                    raise ValueError(f"references.{key}.datasets.{dataset}.{level} must give "
                                     f"{len(metrics.get(level, []))} values ({metrics.get(level, [])})")
        source = {k: str(entry["source"][k]) for k in ("title", "venue", "arxiv", "location")}
        refs.append(Reference(key, entry["name"], entry["description"], source, metrics,
                              {d: {lvl: [float(v) for v in vals] for lvl, vals in lv.items()} for d, lv in values.items()},
                              " ".join(str(entry["note"]).split())))
    return refs
