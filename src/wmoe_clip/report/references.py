"""Published numbers with their provenance, and whether each was produced by our protocol.

A :class:`Cell` is one published number: its value, where it is printed (paper and table, or
repository file and commit), the protocol that produced it (training source, dataset variant, metric
definition as the evaluation JSON's metric key) and, when the printing paper copied it from another,
that paper. The report gives a Δ only against a cell whose protocol matches the evaluation's
(:func:`mismatch` says why not otherwise).

Sources: the WMoE-CLIP paper's Table 1 columns (``config/paper_results.yaml``, "as reported in
WMoE-CLIP") and one file per published source under ``config/references/`` (AnomalyCLIP's Tables 1–2
and its released checkpoints' per-class logs, WinCLIP's paper).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import WMoEError

LEVELS = ("image", "pixel")
UNTRAINED = "none"
# Metrics of an evaluation JSON that a published table may give (AnomalyCLIP's PRO is aupro_anomalyclip).
COMPARABLE = {"image": {"auroc", "ap", "f1_max"}, "pixel": {"auroc", "ap", "f1_max", "aupro", "aupro_anomalyclip"}}


def read_yaml(path: Path) -> Any:
    """A YAML file, or a one-line error at its file:line:column."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise WMoEError(f"{where}: not valid YAML ({what}); fix the file (a published-numbers file)") from None
    except yaml.YAMLError as exc:
        raise WMoEError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None


@dataclass(frozen=True)
class Protocol:
    """How a source's numbers were produced: training source per target ("default" for the rest)."""

    training: dict[str, str]
    variants: dict[str, str] = field(default_factory=dict)  # dataset -> registry protocol variant
    training_free: frozenset[str] = frozenset()
    note: str = ""

    def source_for(self, method: str, target: str, trained: bool = True) -> str:
        if not trained or method in self.training_free:
            return UNTRAINED
        return self.training.get(target, self.training.get("default", "unknown"))


@dataclass(frozen=True)
class Cell:
    value: float  # percent
    method: str
    dataset: str
    level: str
    metric: str  # the evaluation JSON's metric key: the metric definition
    training: str  # training source dataset key, "none" (training-free) or "unknown"
    variant: str | None  # the registry protocol variant of the test data, None: the dataset's only one
    where: str  # "AnomalyCLIP (ICLR 2024, arXiv:2310.18961), Table 1 (industrial domain), ..."
    copied_from: str | None = None  # the paper the printing source took it from
    source_key: str = ""

    def provenance(self) -> str:
        trained = "training-free" if self.training == UNTRAINED else (
            "training source not stated" if self.training == "unknown" else f"trained on {self.training}")
        variant = f", test data {self.variant}" if self.variant else ""
        copied = f"; {self.copied_from}" if self.copied_from else ""
        return f"{self.value:.1f}: {self.where}{copied}; {trained}{variant}; metric {self.level} {self.metric}"


def mismatch(cell: Cell, source: str, variant: str | None) -> str | None:
    """Why ``cell`` is not comparable with our evaluation trained on ``source`` on data ``variant``;
    None when the protocols match."""
    if cell.training == "unknown":
        return "the protocol of the published number is not stated (no table of its own paper gives it)"
    if cell.training != source:
        theirs = "training-free" if cell.training == UNTRAINED else f"trained on {cell.training}"
        ours = "training-free" if source == UNTRAINED else f"trained on {source}"
        return f"published {theirs}, ours {ours}"
    if cell.variant != variant:
        return (f"published on the test data {cell.variant or 'of its paper'}, ours on "
                f"{variant or 'the dataset’s only protocol'}")
    return None


@dataclass(frozen=True)
class ReleasedLog:
    """The per-class log of one released checkpoint evaluated with its authors' code."""

    checkpoint: str
    log: str
    training: str
    dataset: str
    metrics: list[tuple[str, str]]  # (level, metric) in the log's column order
    classes: dict[str, list[float]]
    mean: list[float]
    where: str

    def value(self, cls: str, level: str, metric: str) -> float | None:
        if (level, metric) not in self.metrics or cls not in self.classes:
            return None
        return self.classes[cls][self.metrics.index((level, metric))]


@dataclass
class Source:
    """One file of published numbers."""

    key: str
    short: str
    citation: str
    path: Path
    protocol: Protocol
    cells: list[Cell]
    not_covered: dict[str, str]
    released: list[ReleasedLog] = field(default_factory=list)
    released_run: str | None = None
    column_names: dict[str, str] = field(default_factory=dict)  # method key -> its printed name


def _citation(src: dict[str, Any]) -> str:
    bits = [str(src["venue"])] + ([f"arXiv:{src['arxiv']}"] if src.get("arxiv") else [])
    return f"{src['short']} ({', '.join(bits)})"


def load_source(path: Path, datasets: set[str]) -> Source:
    """A references file (``config/references/*.yaml``), checked on load."""
    raw = read_yaml(path)
    try:
        src = raw["source"]
        prot = raw["protocol"]
        protocol = Protocol(dict(prot["training"]), dict(prot.get("variants") or {}),
                            frozenset(prot.get("training_free") or []), " ".join(str(prot.get("note", "")).split()))
        citation = _citation(src)
        repo = f", github {src['repository']} at {str(src['commit'])[:7]}" if src.get("repository") else ""
        cells = []
        for table in raw["tables"]:
            metrics = {lvl: list(table["metrics"][lvl]) for lvl in LEVELS if lvl in table["metrics"]}
            for lvl, names in metrics.items():
                if not set(names) <= COMPARABLE[lvl]:
                    raise ValueError(f"{table['key']}.metrics.{lvl} must be among {sorted(COMPARABLE[lvl])}")
            columns = table["columns"]
            copied = table.get("copied") or {}
            for row in table["rows"]:
                dataset = row.get("dataset")
                if dataset is not None and dataset not in datasets:
                    raise ValueError(f"{table['key']}: row {row['name']}: dataset {dataset} is not a dataset of "
                                     f"Table 1 ({', '.join(sorted(datasets))}) nor null")
                for lvl in LEVELS:
                    if lvl not in row:
                        continue
                    if lvl not in metrics:
                        raise ValueError(f"{table['key']}: row {row['name']} gives {lvl} values, but the table "
                                         f"has no {lvl} metrics")
                    if len(row[lvl]) != len(columns):
                        raise ValueError(f"{table['key']}: row {row['name']}.{lvl} must give one tuple per "
                                         f"column ({len(columns)})")
                    for col, values in zip(columns, row[lvl]):
                        if values is None or dataset is None:
                            continue
                        if len(values) != len(metrics[lvl]):
                            raise ValueError(f"{table['key']}: row {row['name']}.{lvl} column {col['name']} must "
                                             f"give {len(metrics[lvl])} values ({metrics[lvl]})")
                        dagger = copied.get(col["method"]) or {}
                        from_paper = dagger.get("from") if dataset in dagger.get("datasets", []) else None
                        names = (dagger.get("metrics") or {}).get(lvl, metrics[lvl]) if from_paper else metrics[lvl]
                        for metric, value in zip(names, values):
                            cells.append(Cell(
                                float(value), col["method"], dataset, lvl, metric,
                                protocol.source_for(col["method"], dataset, bool(col["trained"])),
                                row.get("variant"), f"{citation}, {table['location']}{repo}",
                                f"† taken by {src['short']} from {from_paper}" if from_paper else None,
                                str(src["key"])))
        released, run = [], None
        if raw.get("released"):
            rel = raw["released"]
            run = str(rel["run"])
            order = [tuple(m.split(".")) for m in rel["metrics"]]
            for entry in rel["checkpoints"]:
                if entry["dataset"] not in datasets:
                    raise ValueError(f"released: {entry['checkpoint']}: dataset {entry['dataset']} is not a dataset of Table 1")
                classes = {str(c): [float(v) for v in vals] for c, vals in entry["classes"].items()}
                if any(len(v) != len(order) for v in classes.values()) or len(entry["mean"]) != len(order):
                    raise ValueError(f"released: {entry['checkpoint']}: every class must give {len(order)} values")
                released.append(ReleasedLog(
                    entry["checkpoint"], entry["log"], entry["training"], entry["dataset"], order, classes,
                    [float(v) for v in entry["mean"]],
                    f"{src['short']}'s released checkpoint {entry['checkpoint']}, log {entry['log']}{repo}"))
        not_covered = {str(k): " ".join(str(v).split()) for k, v in (raw.get("not_covered") or {}).items()}
        names = {col["method"]: str(col["name"]) for table in raw["tables"] for col in table["columns"]}
        return Source(str(src["key"]), str(src["short"]), citation, path, protocol, cells, not_covered, released,
                      run, names)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WMoEError(f"{path}: malformed published numbers ({_describe(exc)})") from None


def _describe(exc: Exception) -> str:
    return f"missing key {exc.args[0]!r}" if isinstance(exc, KeyError) else " ".join(str(exc).split())


@dataclass
class References:
    """Every published cell the report may put beside ours, and what the files do not cover."""

    sources: list[Source]
    problems: list[str]  # missing files, datasets a file does not cover: said on stderr and in the report

    def cells(self, method: str, dataset: str, level: str, metric: str) -> list[Cell]:
        return [c for s in self.sources for c in s.cells
                if (c.method, c.dataset, c.level, c.metric) == (method, dataset, level, metric)]

    def choose(self, method: str, dataset: str, level: str, metric: str, source: str | None,
               variant: str | None, prefer: tuple[str, ...] = ()) -> tuple[Cell | None, str | None]:
        """The published cell to show beside our (method, dataset, level, metric) trained on
        ``source``, and why there is no Δ (None when there is one): a cell of our protocol if any,
        the method's own paper first (``prefer``: source keys in order), else the preferred cell."""
        cells = sorted(self.cells(method, dataset, level, metric),
                       key=lambda c: (prefer.index(c.source_key) if c.source_key in prefer else len(prefer)))
        if not cells:
            return None, None
        if source is None:
            return cells[0], None
        for c in cells:
            if mismatch(c, source, variant) is None:
                return c, None
        return cells[0], mismatch(cells[0], source, variant)

    def released_log(self, method: str, source: str, target: str) -> ReleasedLog | None:
        """The official per-class log of ``method``'s released checkpoint trained on ``source`` and
        evaluated on ``target``, if its authors published one."""
        return next((log for s in self.sources if s.key == method for log in s.released
                     if (log.training, log.dataset) == (source, target)), None)

    def method_names(self) -> dict[str, str]:
        return {m: n for s in self.sources for m, n in s.column_names.items()}

    @property
    def released_runs(self) -> dict[str, str]:
        """Run name of an imported released checkpoint -> the method's short name."""
        return {s.released_run: s.short for s in self.sources if s.released_run}


def load_references(paths: list[Path], datasets: set[str], paper_cells: list[Cell] | None = None) -> References:
    """The files of ``paths`` (a missing one is a problem, not an error), plus the paper's own cells."""
    sources, problems = [], []
    for path in paths:
        if not path.is_file():
            problems.append(f"{path}: references file not found; its published numbers are not shown")
            continue
        s = load_source(path, datasets)
        by_reason: dict[str, list[str]] = {}
        for d in sorted(datasets - {c.dataset for c in s.cells}):
            by_reason.setdefault(s.not_covered.get(d, "no row for it in the file"), []).append(d)
        problems += [f"{path}: no published number for {', '.join(ds)} ({why})" for why, ds in by_reason.items()]
        sources.append(s)
    refs = References(sources, problems)
    if paper_cells:
        refs.sources.insert(0, Source("paper", "WMoE-CLIP", "", Path(), Protocol({}), paper_cells, {}))
    return refs


def warn(problems: list[str]) -> None:
    for p in problems:
        print(f"wmoe-clip report: {p}", file=sys.stderr)
