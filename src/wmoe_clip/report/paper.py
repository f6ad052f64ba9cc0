"""The paper's Table 1 and Table 2 as data (``config/paper_results.yaml``), checked on load.

Every Table 1 cell becomes a published :class:`~wmoe_clip.report.references.Cell` "as reported in
WMoE-CLIP", with the paper's protocol, or, for the cells the file marks as copied from another paper's
own table, that paper's protocol. The same file's ``references:`` name the files of published numbers
in the methods' own papers (``config/references/``), loaded with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import WMoEError
from ..model import registry
from .references import LEVELS, Cell, Protocol, References, load_references, read_yaml

DEFAULT_PATH = Path("config/paper_results.yaml")


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
    references: References = field(default_factory=lambda: References([], []))

    def method_name(self, key: str) -> str:
        """Display name of a method: the paper's column, else a column of a references file, else the method
        registry's display name, else the key itself."""
        names = self.references.method_names() | {m.key: m.name for m in self.methods}
        if key in names:
            return names[key]
        return registry.METHODS[key].display_name if key in registry.METHODS else key

    def paper_cell(self, method: str, dataset: str, level: str, metric: str) -> Cell | None:
        """The paper's Table 1 cell of ``method`` (as reported in WMoE-CLIP), with its provenance."""
        return next((c for c in self.references.cells(method, dataset, level, metric) if c.source_key == "paper"),
                    None)

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
    raw = read_yaml(path)
    try:
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
        result = PaperResults(
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
        cells = _paper_cells(result, t1)
        files = [path.parent / str(p) for p in raw.get("references") or []]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing key {exc.args[0]!r}" if isinstance(exc, KeyError) else " ".join(str(exc).split())
        raise WMoEError(f"{path}: malformed paper results ({what})") from None
    refs = load_references(files, {d.key for d in datasets})
    paper_cells = load_references([], set(), [_resolve_copy(c, refs) for c in cells])
    return dataclasses.replace(result, references=References(paper_cells.sources + refs.sources, refs.problems))


def _resolve_copy(cell: Cell, refs: References) -> Cell:
    """A copied cell takes the training source and test data of the cell it equals in the other
    paper's table; a metric that table does not give has an unknown training source."""
    if not cell.training.startswith("copied:"):
        return cell
    key = cell.training.split(":", 1)[1]
    theirs = next((c for c in refs.cells(cell.method, cell.dataset, cell.level, cell.metric) if c.source_key == key),
                  None)
    if theirs is None:
        return dataclasses.replace(cell, training="unknown", copied_from=None)
    return dataclasses.replace(cell, training=theirs.training, variant=theirs.variant,
                               copied_from=f"equal to {theirs.where} (presumably copied from there)")


def _paper_cells(paper: PaperResults, t1: dict[str, Any]) -> list[Cell]:
    """Every Table 1 number as a published cell with its protocol and provenance."""
    prot = t1["protocol"]
    protocol = Protocol(dict(prot["training"]), dict(prot.get("variants") or {}), frozenset(prot.get("training_free") or []))
    where = f"as reported in WMoE-CLIP (arXiv:{paper.source['arxiv']}), {paper.table1_location}"
    copied = t1.get("copied") or {}
    for method, entry in copied.items():
        if method not in {m.key for m in paper.methods}:
            raise ValueError(f"table1.copied.{method} is not a method of table1")
    cells = []
    for d in paper.datasets:
        for level, per_method in d.values.items():
            for m in paper.methods:
                entry = copied.get(m.key) or {}
                other = entry.get("source") if level in (entry.get("cells") or {}).get(d.key, []) else None
                for metric, value in zip(paper.metrics[level], per_method[m.key]):
                    # A copied cell carries the copied paper's protocol, filled in from that file on match.
                    training = f"copied:{other}" if other else protocol.source_for(m.key, d.key)
                    cells.append(Cell(float(value), m.key, d.key, level, metric, training,
                                      protocol.variants.get(d.key), where,
                                      f"equal to {other}'s own table (copied)" if other else None, "paper"))
    return cells
