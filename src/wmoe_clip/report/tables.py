"""Table 1 and Table 2: our numbers beside the paper's, as format-neutral tables of strings.

Table 1 keeps the paper's columns and adds one group of columns per method run through this harness
(WMoE-CLIP's main variant, then the baselines of `methods:`), each compared with the published number of
that same method: its column in the paper, or its reference (``references:`` of the paper file) for a
method the paper does not report. A training-free method (source ``none``) stands in every "Trained
on" block of a dataset. Table 2 is WMoE-CLIP's ablation alone.

Values are percentages with one decimal as in the paper. "Ours" is the mean over seeds, with
± the sample standard deviation when there are several; Δ = ours − paper; image AUROC carries a
stratified bootstrap 95% CI (stats.py). A cell without a result is "–" and the table says why.
A dataset name carries the protocol of our data ("KSDD2 (official)") and, when the mean
covers fewer classes than the registry's, the coverage ("MVTec-AD (3/15 classes)"), with a note, so
such a cell is never read as the paper's. Datasets the paper has no numbers for (users' own, and
registry datasets outside its tables) get their own table (``custom_table``).
A cell whose model was trained on the target itself (``evaluate --allow-same-source``) is not
zero-shot: its value carries "†", it gets no Δ, and a note says so.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import pandas as pd

from ..data import registry
from ..plan import UNTRAINED
from .paper import PaperDataset, PaperResults
from .references import Cell
from .results import Evaluation, Results
from .stats import bootstrap_auroc_ci

MISSING = "–"
NOT_APPLICABLE = "n/a"
# Δ of a cell whose published number comes from another protocol than ours (the reason is on hover).
NOT_COMPARABLE = "n/c"
NOT_COMPARABLE_NOTE = (
    f"{NOT_COMPARABLE}: no Δ, the published number was produced by another protocol than ours (training "
    "source, test data or metric); hover over a number for its source and protocol. Why, per method:"
)
NOT_ZERO_SHOT = "†"
NOT_ZERO_SHOT_NOTE = (
    f"{NOT_ZERO_SHOT} not zero-shot: the model was trained on the target dataset itself (wmoe-clip evaluate "
    "--allow-same-source); not comparable with the paper's zero-shot numbers, so no Δ is given."
)
METRIC_NAMES = {"auroc": "AUROC", "f1_max": "F1-max", "ap": "AP", "aupro_anomalyclip": "PRO", "aupro": "AUPRO"}
LEVEL_NAMES = {"image": "image level", "pixel": "pixel level"}
# Each renderer puts it under its own "Synthetic data" heading (HTML banner, LaTeX first note).
SYNTHETIC_NOTE = (
    "These numbers come from generated stand-in datasets (wmoe-clip synth); they exercise the "
    "pipeline and say nothing about the method. Do not compare them with the paper."
)


@dataclass
class Table:
    key: str
    title: str
    caption: str
    columns: list[str]
    # One alignment letter per column: l, c, r as in LaTeX, and L: left, wrapping onto a second line in
    # LaTeX (a dataset name with its protocol and coverage must not push the table off the page).
    align: str
    # Spanning header rows above the column names: (label, number of columns); "" leaves a gap.
    header_groups: list[list[tuple[str, int]]] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    # Row index -> label of a section that starts there (a full-width row between rules).
    sections: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    synthetic: bool = False
    # HTML only, one entry per column: "start" opens a column group (a rule on its left); "m<i>" tints
    # the columns of the i-th method run alike, its paper column and its own, so a reader pairs them.
    column_styles: list[str] = field(default_factory=list)
    # HTML only: (row, column) -> hover text (title attribute): a published number's provenance, or why
    # a cell has no Δ.
    titles: dict[tuple[int, int], str] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    """Mean, std (None for one seed) and number of seeds of one metric, in [0, 1]."""

    mean: float
    std: float | None
    n: int


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def fmt_ours(s: Summary | None) -> str:
    if s is None:
        return MISSING
    return pct(s.mean) if s.std is None else f"{pct(s.mean)} ± {100 * s.std:.1f}"


def fmt_delta(s: Summary | None, paper: float | None) -> str:
    # A true minus sign, as the paper typesets negative numbers.
    return MISSING if s is None or paper is None else f"{100 * s.mean - paper:+.1f}".replace("-", "−")


def fmt_ci(ci: tuple[float, float] | None) -> str:
    return MISSING if ci is None else f"[{pct(ci[0])}, {pct(ci[1])}]"


def ours_and_delta(s: Summary | None, paper: float | None, zero_shot: bool = True) -> list[str]:
    """The "Ours" and "Δ" cells; a result that is not zero-shot is marked and gets no Δ."""
    if s is not None and not zero_shot:
        return [f"{fmt_ours(s)} {NOT_ZERO_SHOT}", NOT_APPLICABLE]
    return [fmt_ours(s), fmt_delta(s, paper)]


def summarise(tidy: pd.DataFrame) -> dict[tuple[str, str, str, str, str], Summary]:
    """(source, target, variant, level, metric) -> Summary over seeds."""
    if tidy.empty:
        return {}
    keys = ["source", "target", "variant", "level", "metric"]
    grouped = tidy.groupby(keys)["value"].agg(["mean", "std", "count"])
    return {
        key: Summary(float(r["mean"]), float(r["std"]) if r["count"] > 1 else None, int(r["count"]))
        for key, r in grouped.iterrows()
    }


class _Cells:
    """Summaries and bootstrap CIs of one results folder, looked up per table cell."""

    def __init__(self, results: Results, resamples: int, seed: int):
        self.results = results
        self.summary = summarise(results.tidy())
        self.resamples = resamples
        self.seed = seed
        self._ci: dict[tuple[str, str, str], tuple[float, float] | None] = {}

    def sources(self, target: str, variant: str) -> list[str]:
        return sorted({k[0] for k in self.summary if k[1] == target and k[2] == variant})

    def evaluations(self, target: str, source: str | None = None, variant: str | None = None) -> list[Evaluation]:
        return [e for e in self.results.evaluations
                if e.target == target and source in (None, e.source) and variant in (None, e.variant)]

    def get(self, source: str, target: str, variant: str, level: str, metric: str) -> Summary | None:
        return self.summary.get((source, target, variant, level, metric))

    def zero_shot(self, source: str | None, target: str, variant: str) -> bool:
        """False when any seed of the cell was trained on its target (marked, or source == target)."""
        return not any(e.data.get("zero_shot") is False or e.source == e.target
                       for e in self.results.evaluations if (e.source, e.target, e.variant) == (source, target, variant))

    def ci(self, source: str, target: str, variant: str) -> tuple[float, float] | None:
        key = (source, target, variant)
        if key not in self._ci:
            scores = [
                e.data["image_scores"]
                for e in sorted(self.results.evaluations, key=lambda e: e.seed)
                if (e.source, e.target, e.variant) == key and e.data.get("image_scores")
            ]
            self._ci[key] = bootstrap_auroc_ci(scores, self.resamples, seed=self.seed) if scores else None
        return self._ci[key]


def _protocols(evaluations: list[Evaluation]) -> list[str]:
    return sorted({e.protocol for e in evaluations if e.protocol})


def _partial(evaluations: list[Evaluation]) -> list[tuple[int, int]]:
    """(classes evaluated, registry classes) of the evaluations that cover fewer than the registry's."""
    return sorted({c for c in (e.class_coverage for e in evaluations) if c and c[0] < c[1]})


def data_label(name: str, evaluations: list[Evaluation]) -> str:
    """``name`` with the protocol(s) of the data and, when fewer than the registry's, the classes covered."""
    extras = _protocols(evaluations)
    partial = _partial(evaluations)
    if partial:
        extras.append("{}/{} classes".format(*partial[0]))
    return f"{name} ({', '.join(extras)})" if extras else name


def _data_notes(table: Table, key: str, label: str, evaluations: list[Evaluation]) -> None:
    """Notes for a label that is not the paper's protocol: another protocol of the dataset, or fewer classes."""
    default = registry.get(key).protocol if key in registry.keys() else None
    others = [p for p in _protocols(evaluations) if p != default]
    if others:
        table.notes.append(f"{label}: evaluated on the protocol {', '.join(others)}, not the project's "
                           f"default {default}; another test set than the paper's, so Δ compares different data.")
    partial = _partial(evaluations)
    if partial:
        covered = " or ".join(f"{k} of {n}" for k, n in partial)
        table.notes.append(f"{label}: the mean covers {covered} classes of the registry (a partial dataset); "
                           "it is not comparable with the paper's cell.")


def _common_notes(table: Table, paper: PaperResults, location: str, results: Results) -> None:
    table.synthetic = results.synthetic
    table.notes.append(
        f"Paper columns: {location} of “{paper.source['title']}” ({paper.citation()}), as recorded in "
        f"{paper.path.as_posix()}. Ours: mean over seeds (± std with several seeds); Δ = ours − paper."
    )
    if any(NOT_ZERO_SHOT in cell for row in table.rows for cell in row):
        table.notes.append(NOT_ZERO_SHOT_NOTE)


@dataclass(frozen=True)
class RunGroup:
    """One method run through this harness: a group of Table 1 columns beside the paper's."""

    method: str
    run: str  # its run name, the results layout's {variant} segment
    label: str
    main: bool  # the paper's method: carries the bootstrap CI
    # "paper": the paper's Table 1 has its column; "reference": a references file gives published
    # numbers (a "Published" column: the one of our protocol, else the method's own paper's);
    # None: no published number recorded (ours only)
    published: str | None

    @property
    def columns(self) -> list[str]:
        if self.main:
            return ["Ours", "Δ", "95% CI"]
        return {"paper": ["Published", "Ours", "Δ"], "reference": ["Published", "Ours", "Δ"], None: ["Ours"]}[self.published]


def run_groups(paper: PaperResults, results: Results) -> list[RunGroup]:
    """The paper's method (always, so a missing result shows as "–"), then every other method with an
    evaluation on a dataset of Table 1: the paper's columns' order first, then references, then by name."""
    main = paper.paper_method
    groups = [RunGroup(main, paper.main_variant, f"{paper.method_name(main)} ({paper.main_variant})", True, "paper")]
    keys = {d.key for d in paper.datasets}
    runs = {(e.method, e.variant) for e in results.evaluations if e.target in keys and e.method != main}
    order = [m.key for m in paper.methods] + list(paper.references.method_names())
    for method, run in sorted(runs, key=lambda mr: (order.index(mr[0]) if mr[0] in order else len(order), mr)):
        published = "paper" if any(m.key == method for m in paper.methods) else (
            "reference" if any(c.method == method for s in paper.references.sources for c in s.cells) else None)
        groups.append(RunGroup(method, run, run_label(paper, method, run), False, published))
    return groups


def run_label(paper: PaperResults, method: str, run: str) -> str:
    """A method run's name in the report: the method's, with its run when that is not the method's own."""
    name = paper.method_name(method)
    if run == method:
        return name
    return f"{name} (released checkpoint)" if run in paper.references.released_runs else f"{name} ({run})"


def _group_cells(group: RunGroup, s: Summary | None, cell: Cell | None, why: str | None,
                 zero_shot: bool) -> tuple[list[str], list[str]]:
    """The group's cells and their hover texts: published (with its provenance), ours, Δ (or "n/c"
    with the reason when the published number comes from another protocol)."""
    if group.published is None:
        return [ours_and_delta(s, None, zero_shot)[0]], [""]
    published = None if cell is None or why else cell.value
    ours, delta = ours_and_delta(s, published, zero_shot)
    delta_title = ""
    if why and s is not None and zero_shot:
        delta, delta_title = NOT_COMPARABLE, f"no Δ: {why}"
    values = [ours, delta]
    titles = ["", delta_title]
    if not group.main:
        values.insert(0, MISSING if cell is None else f"{cell.value:.1f}")
        titles.insert(0, "" if cell is None else cell.provenance())
    return values, titles


def _column_styles(paper: PaperResults, groups: list[RunGroup], n_paper: int) -> list[str]:
    styles = ["", "", "", "start", *[""] * (n_paper - 1)]
    paper_keys = [m.key for m in paper.methods]
    for i, g in enumerate(groups):
        tint = f"m{i}"
        if g.method in paper_keys:
            styles[3 + paper_keys.index(g.method)] += f" {tint}"
        styles += [f"start {tint}", *[tint] * (len(g.columns) - 1)]
    return [s.strip() for s in styles]


def _blocks(sources: dict[RunGroup, list[str]]) -> list[str | None]:
    """The "Trained on" blocks of a dataset: every training source of a trained method; the untrained
    methods' ``none`` only when no trained method has a result; [None] when nothing has."""
    every = set().union(*sources.values())
    return sorted(every - {UNTRAINED}) or sorted(every) or [None]


def _source_in_block(block: str | None, sources: list[str]) -> str | None:
    """The source of a method's cell in a block: the block's own, or ``none`` for an untrained method."""
    if block in sources:
        return block
    return UNTRAINED if UNTRAINED in sources else None


def table1(paper: PaperResults, results: Results, resamples: int = 1000, seed: int = 0) -> Table:
    cells = _Cells(results, resamples, seed)
    groups = run_groups(paper, results)
    method_names = [m.name if m.key != paper.paper_method else f"{m.name} (paper)" for m in paper.methods]
    run_columns = [c for g in groups for c in g.columns]
    table = Table(
        key="table1",
        title="Table 1 — zero-shot anomaly detection on 14 datasets",
        caption=paper.table1_caption,
        columns=["Dataset", "Metric", "Trained on", *method_names, *run_columns],
        align="Lll" + "r" * len(method_names) + "".join("c" if c == "95% CI" else "r" for c in run_columns),
        header_groups=[
            [("", 3), (f"Paper, {paper.table1_location}", len(method_names)), ("This run", len(run_columns))],
            [("", 3 + len(method_names)), *((g.label, len(g.columns)) for g in groups)],
        ],
    )
    table.column_styles = _column_styles(paper, groups, len(method_names))
    missing: dict[RunGroup, list[PaperDataset]] = {g: [] for g in groups}
    labelled: dict[str, tuple[str, list[Evaluation]]] = {}
    reasons: dict[str, dict[str, None]] = {}
    # A baseline's published number: its own paper's, else a run published in a references file (its
    # protocol stated there), else the paper's column, which re-prints it "as reported in WMoE-CLIP"
    # without saying whether it was re-run; within that order, the first of our protocol.
    published_runs = tuple(s.key for s in paper.references.sources if s.key != "paper")
    for level in ("image", "pixel"):
        for domain in dict.fromkeys(d.domain for d in paper.datasets):
            group = [d for d in paper.datasets if d.domain == domain and level in d.values]
            if not group:
                continue
            names = ", ".join(METRIC_NAMES.get(m, m) for m in paper.metrics[level])
            table.sections[len(table.rows)] = f"{domain.capitalize()}, {LEVEL_NAMES[level]} ({names})"
            for d in group:
                sources = {g: cells.sources(d.key, g.run) for g in groups}
                for g, found in sources.items():
                    if not found and d not in missing[g]:
                        missing[g].append(d)
                for block in _blocks(sources):
                    in_block = {g: _source_in_block(block, sources[g]) for g in groups}
                    evaluations = [e for g, src in in_block.items() if src for e in cells.evaluations(d.key, src, g.run)]
                    label = data_label(d.display_name, evaluations) if evaluations else d.display_name
                    if evaluations:
                        labelled.setdefault(label, (d.key, evaluations))
                    for i, metric in enumerate(paper.metrics[level]):
                        row = [label if i == 0 else "", METRIC_NAMES.get(metric, metric),
                               (block or MISSING) if i == 0 else "",
                               *(f"{d.values[level][m.key][i]:.1f}" for m in paper.methods)]
                        titles = ["", "", ""] + [_title(paper.paper_cell(m.key, d.key, level, metric))
                                                 for m in paper.methods]
                        for g in groups:
                            src = in_block[g]
                            s = cells.get(src, d.key, g.run, level, metric) if src else None
                            protocols = _protocols(cells.evaluations(d.key, src, g.run)) if src else []
                            prefer = ("paper",) if g.main else (g.method, *published_runs, "paper")
                            cell, why = paper.references.choose(g.method, d.key, level, metric, src,
                                                                protocols[0] if protocols else None, prefer)
                            if why and s is not None:
                                reasons.setdefault(g.label, {}).setdefault(why, None)
                            values, hover = _group_cells(g, s, cell, why, cells.zero_shot(src, d.key, g.run))
                            row += values
                            titles += hover
                            if g.main and level == "image" and metric == "auroc":
                                row.append(fmt_ci(cells.ci(src, d.key, g.run)) if src else MISSING)
                                titles.append("")
                            elif g.main:
                                row.append("")
                                titles.append("")
                        table.titles.update({(len(table.rows), j): t for j, t in enumerate(titles) if t})
                        table.rows.append(row)
    _common_notes(table, paper, paper.table1_location, results)
    _group_notes(table, paper, groups, results)
    if reasons:
        table.notes.append(NOT_COMPARABLE_NOTE + " " + " ".join(
            f"{label}: {'; '.join(why)}." for label, why in reasons.items()))
    _source_notes(table, paper)
    for label, (key, evaluations) in labelled.items():
        _data_notes(table, key, label, evaluations)
    for g, datasets in missing.items():
        if datasets:
            keys = ",".join(d.key for d in datasets)
            targets = f"{{{keys}}}" if len(datasets) > 1 else keys  # shell brace expansion
            table.notes.append(f"{MISSING} {g.label}: no result for {', '.join(d.display_name for d in datasets)} "
                               f"(nothing in {results.root.as_posix()}/eval/*/{targets}/{g.run}/).")
    return table


def _title(cell: Cell | None) -> str:
    return "" if cell is None else cell.provenance()


def _source_notes(table: Table, paper: PaperResults) -> None:
    """Where the published numbers come from (the footnote of the hover texts), and what is missing."""
    for s in paper.references.sources:
        if s.key == "paper":
            continue
        table.notes.append(f"Published numbers of {s.citation} ({s.path.as_posix()}): {s.protocol.note or 'see the file'}.")
    table.notes += [f"Not shown: {p}." for p in paper.references.problems]


def _group_notes(table: Table, paper: PaperResults, groups: list[RunGroup], results: Results) -> None:
    """What each group of "This run" is and what its Δ compares with."""
    main = groups[0]
    table.notes.append(
        f"This run: one group of columns per method run through this harness. {main.label}: the model with "
        f"all three modules (variant “{main.run}”), trained on the source named in “Trained on” and evaluated "
        "zero-shot. PRO is the AnomalyCLIP-compatible AUPRO (aupro_anomalyclip). 95% CI: stratified bootstrap "
        "over test images, image AUROC only."
    )
    others = groups[1:]
    if any(g.published == "paper" for g in others):
        names = ", ".join(g.label for g in others if g.published == "paper")
        table.notes.append(f"{names}: Published = the number of the same method produced by our protocol: its "
                           "own paper's, else a run another paper published (its protocol stated), else the "
                           "paper's column, the first of them whose protocol matches; Δ = ours − Published.")
    not_run = [m.name for m in paper.methods if m.key not in {g.method for g in groups}]
    if not_run:
        table.notes.append(f"Not run here, the paper's numbers only: {', '.join(not_run)}.")
    for g in others:
        if g.published is None:
            table.notes.append(f"{g.label}: no published numbers recorded (neither a column of the paper's "
                               f"Table 1 nor a references file of {paper.path.as_posix()}); ours only.")
        elif g.published == "reference":
            table.notes.append(f"{g.label}: no column in the paper's Table 1; Published: its number in the "
                               "references files whose protocol is ours, else its own paper's (no Δ).")
    untrained = [g.label for g in groups
                 if any(e.source == UNTRAINED for e in results.evaluations if e.variant == g.run)]
    if untrained:
        table.notes.append(f"{', '.join(untrained)}: training-free, evaluated without a training step (“Trained "
                           f"on” {UNTRAINED}); the same numbers stand in every “Trained on” block of a dataset.")


def table2(paper: PaperResults, results: Results, resamples: int = 1000, seed: int = 0) -> Table:
    cells = _Cells(results, resamples, seed)
    # Table 2 is the paper's method alone: the baselines' evaluations do not label its datasets.
    ours = {d.key: [e for e in cells.evaluations(d.key) if e.method == paper.paper_method] for d in paper.datasets}
    names = {d.key: data_label(d.display_name, ours[d.key]) for d in paper.datasets}
    per_dataset = ["Paper", "Ours", "Δ", "95% CI", "Paper", "Ours", "Δ"]
    columns = ["CTDS", "WCMA", "SA-MoE", *(per_dataset * len(paper.table2_datasets))]
    table = Table(
        key="table2",
        title="Table 2 — ablation of the three modules",
        caption=paper.table2_caption,
        columns=columns,
        align="ccc" + "rrrcrrr" * len(paper.table2_datasets),
        header_groups=[
            [("", 3), *((names.get(d, d), 7) for d in paper.table2_datasets)],
            [("", 3), *((g, n) for _ in paper.table2_datasets for g, n in (("Image AUROC", 4), ("Pixel AUROC", 3)))],
        ],
    )
    missing, multi = [], []
    for row in paper.ablation:
        cells_row = ["✓" if on else "" for on in row.switches]
        for d in paper.table2_datasets:
            sources = cells.sources(d, row.variant)
            if len(sources) > 1:
                multi.append(f"{names.get(d, d)} / {row.variant}: trained on {', '.join(sources)}; showing {sources[0]}")
            source = sources[0] if sources else None
            if source is None:
                missing.append(f"{row.variant} on {names.get(d, d)}")
            for level in ("image", "pixel"):
                metric = paper.table2_metrics[level]
                theirs = row.values[d][level]
                s = cells.get(source, d, row.variant, level, metric) if source else None
                cells_row += [f"{theirs:.1f}", *ours_and_delta(s, theirs, cells.zero_shot(source, d, row.variant))]
                if level == "image":
                    cells_row.append(fmt_ci(cells.ci(source, d, row.variant)) if source else MISSING)
        table.rows.append(cells_row)
    _common_notes(table, paper, paper.table2_location, results)
    table.notes.append("95% CI: stratified bootstrap over test images of the image AUROC.")
    for d in paper.table2_datasets:
        _data_notes(table, d, names.get(d, d), ours.get(d, []))
    table.notes += [f"Several sources for {m}." for m in multi]
    if missing:
        table.notes.append(f"{MISSING} no result for: {', '.join(missing)}.")
    return table


CUSTOM_METRICS = {"image": ("auroc", "ap", "f1_max"), "pixel": ("auroc", "ap", "aupro_anomalyclip")}


def custom_table(results: Results, main_variant: str = "full", paper_keys: Collection[str] | None = None) -> Table | None:
    """Every model evaluated on a user's own dataset (config ``custom_targets``) or, with ``paper_keys``
    (the datasets of the paper's tables), on a registry dataset outside them; the main variant first
    for each source; None when there is none."""
    evaluations = [e for e in results.evaluations
                   if e.custom or (paper_keys is not None and e.target not in paper_keys)]
    if not evaluations:
        return None
    summary = summarise(results.tidy())
    metric_columns = [f"{METRIC_NAMES[m]}" for level in CUSTOM_METRICS for m in CUSTOM_METRICS[level]]
    table = Table(
        key="custom",
        title="Your datasets — zero-shot results on datasets outside the paper",
        caption="Each model evaluated zero-shot on the datasets of the workflow's custom_targets "
        "(wmoe-clip prepare folder) and on registry datasets outside the paper's tables. The paper has no "
        "numbers for them.",
        columns=["Dataset", "Trained on", "Model variant", "Classes", "Normal / anomalous", *metric_columns],
        align="lllrr" + "r" * len(metric_columns),
        header_groups=[[("", 5), *((f"{LEVEL_NAMES[lvl].capitalize()}", len(m)) for lvl, m in CUSTOM_METRICS.items())]],
        synthetic=any(e.synthetic for e in evaluations),
    )
    first: dict[tuple[str, str, str], Evaluation] = {}
    for e in sorted(evaluations, key=lambda e: (e.target, e.source, e.variant != main_variant, e.variant, e.seed)):
        first.setdefault((e.target, e.source, e.variant), e)
    for (target, source, variant), e in first.items():
        dataset, counts = e.data["dataset"], e.data["counts"]
        row = [dataset["display_name"], source, variant, str(counts["n_classes"]),
               f"{counts['n_normal']} / {counts['n_anomalous']}"]
        for level, metrics in CUSTOM_METRICS.items():
            applies = dataset[f"{level}_metrics"]
            row += [fmt_ours(summary.get((source, target, variant, level, m))) if applies else NOT_APPLICABLE
                    for m in metrics]
        table.rows.append(row)
    seen = set()
    for (target, _, _), e in first.items():
        if target in seen:
            continue
        seen.add(target)
        covered = [f"{LEVEL_NAMES[lvl]} over {m['auroc']['n_classes']} of {e.data['counts']['n_classes']} classes"
                   for lvl, m in e.data["mean"].items()]
        table.notes.append(f"{e.data['dataset']['display_name']}: means at {' and '.join(covered)} (a class counts "
                           "where the metric applies: image level needs normal and anomalous images, pixel level "
                           f"masks; see its prepare.json). {NOT_APPLICABLE}: the level does not apply to the dataset.")
    table.notes.append("Ours: mean over seeds (± std with several seeds). PRO is the AnomalyCLIP-compatible AUPRO.")
    return table


# Columns of the per-class tables: (level, metric), in the order of AnomalyCLIP's released logs.
PER_CLASS_METRICS = (("pixel", "auroc"), ("pixel", "aupro_anomalyclip"), ("image", "auroc"), ("image", "ap"))


def per_class_tables(paper: PaperResults, results: Results) -> list[Table]:
    """One table per (target, training source, method run) of the benchmarks: our per-class numbers
    (mean over seeds) and, where the method's authors published the per-class log of a released
    checkpoint with the same training source and target, the official numbers and Δ beside them."""
    keys = {d.key: d for d in paper.datasets}
    runs: dict[tuple[str, str, str], list[Evaluation]] = {}
    for e in sorted(results.evaluations, key=lambda e: (e.target, e.source, e.variant, e.seed)):
        if e.target in keys:
            runs.setdefault((e.target, e.source, e.variant), []).append(e)
    tables = []
    for (target, source, run), evals in runs.items():
        method = evals[0].method
        log = paper.references.released_log(method, source, target)
        metrics = [(lvl, m) for lvl, m in PER_CLASS_METRICS if evals[0].data["dataset"][f"{lvl}_metrics"]]
        per_metric = ["Official", "Ours", "Δ"] if log else ["Ours"]
        name = run_label(paper, method, run)
        trained = "training-free" if source == UNTRAINED else f"trained on {source}"
        table = Table(
            key=f"per-class-{target}-{source}-{run}",
            title=f"{data_label(keys[target].display_name, evals)} — {name}, {trained}",
            caption="",
            columns=["Class", *(per_metric * len(metrics))],
            align="l" + "r" * len(per_metric) * len(metrics),
            header_groups=[[("", 1), *((f"{LEVEL_NAMES[lvl]} {METRIC_NAMES[m]}", len(per_metric)) for lvl, m in metrics)]],
            synthetic=any(e.synthetic for e in evals),
        )
        classes = list(dict.fromkeys(c for e in evals for c in e.data["per_class"]))
        for cls in [*classes, None]:
            row = [cls or "mean"]
            for lvl, m in metrics:
                values = [(e.data["per_class"][cls] if cls else e.data["mean"]).get(lvl, {}).get(m) for e in evals
                          if cls is None or cls in e.data["per_class"]]
                values = [v.get("value") if isinstance(v, dict) else v for v in values]
                values = [v for v in values if v is not None]
                ours = Summary(sum(values) / len(values), None, len(values)) if values else None
                if log:
                    official = (log.mean[log.metrics.index((lvl, m))] if (lvl, m) in log.metrics else None) \
                        if cls is None else log.value(cls, lvl, m)
                    row += [MISSING if official is None else f"{official:.1f}", fmt_ours(ours), fmt_delta(ours, official)]
                    if official is not None:
                        table.titles[(len(table.rows), len(row) - 3)] = f"{official:.1f}: {log.where}"
                else:
                    row.append(fmt_ours(ours))
            table.rows.append(row)
        table.notes.append(f"Ours: mean over {len({e.seed for e in evals})} seed(s) of {results.root.as_posix()}/"
                           f"eval/{source}/{target}/{run}/; the mean row is each evaluation's macro mean.")
        if log:
            table.notes.append(f"Official: {log.where}, evaluated with its authors' test.py; Δ = ours − official. "
                               "An imported released checkpoint evaluated here should land on these numbers "
                               "(rounded to 0.1): the check of data, preprocessing, backbone and metrics.")
        tables.append(table)
    return tables
