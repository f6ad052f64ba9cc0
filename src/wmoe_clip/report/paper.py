"""The paper's Table 1 and Table 2 as data (``config/paper_results.yaml``), checked on load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import WMoEError

DEFAULT_PATH = Path("config/paper_results.yaml")
LEVELS = ("image", "pixel")


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
        )
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise WMoEError(f"{path}: malformed paper results ({exc!r})") from None
