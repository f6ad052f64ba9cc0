"""Table 1 and Table 2: our numbers beside the paper's, as format-neutral tables of strings.

Values are percentages with one decimal as in the paper. "Ours" is the mean over seeds, with
± the sample standard deviation when there are several; Δ = ours − paper; image AUROC carries a
stratified bootstrap 95% CI (stats.py). A cell without a result is "–" and the table says why.
A dataset name carries the protocol variant of our data ("KSDD2 (official)") and, when the mean
covers fewer classes than the registry's, the coverage ("MVTec-AD (3/15 classes)"), with a note, so
such a cell is never read as the paper's. Users' own datasets get their own table (``custom_table``).
A cell whose model was trained on the target itself (``evaluate --allow-same-source``) is not
zero-shot: its value carries "†", it gets no Δ, and a note says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..data import registry
from .paper import PaperResults
from .results import Evaluation, Results
from .stats import bootstrap_auroc_ci

MISSING = "–"
NOT_APPLICABLE = "n/a"
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
    align: str  # one LaTeX alignment letter per column
    # Spanning header rows above the column names: (label, number of columns); "" leaves a gap.
    header_groups: list[list[tuple[str, int]]] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    # Row index -> label of a section that starts there (a full-width row between rules).
    sections: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    synthetic: bool = False


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


def fmt_delta(s: Summary | None, paper: float) -> str:
    # A true minus sign, as the paper typesets negative numbers.
    return MISSING if s is None else f"{100 * s.mean - paper:+.1f}".replace("-", "−")


def fmt_ci(ci: tuple[float, float] | None) -> str:
    return MISSING if ci is None else f"[{pct(ci[0])}, {pct(ci[1])}]"


def ours_and_delta(s: Summary | None, paper: float, zero_shot: bool = True) -> list[str]:
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


def _variants(evaluations: list[Evaluation]) -> list[str]:
    return sorted({e.protocol_variant for e in evaluations if e.protocol_variant})


def _partial(evaluations: list[Evaluation]) -> list[tuple[int, int]]:
    """(classes evaluated, registry classes) of the evaluations that cover fewer than the registry's."""
    return sorted({c for c in (e.class_coverage for e in evaluations) if c and c[0] < c[1]})


def data_label(name: str, evaluations: list[Evaluation]) -> str:
    """``name`` with the protocol variant(s) of the data and, when fewer than the registry's, the classes covered."""
    extras = _variants(evaluations)
    partial = _partial(evaluations)
    if partial:
        extras.append("{}/{} classes".format(*partial[0]))
    return f"{name} ({', '.join(extras)})" if extras else name


def _data_notes(table: Table, key: str, label: str, evaluations: list[Evaluation]) -> None:
    """Notes for a label that is not the paper's protocol: another variant, or fewer classes."""
    default = registry.get(key).variant if key in registry.keys() else None
    others = [v for v in _variants(evaluations) if v != default]
    if others:
        table.notes.append(f"{label}: evaluated on the protocol variant {', '.join(others)}, not the project's "
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


def table1(paper: PaperResults, results: Results, resamples: int = 1000, seed: int = 0) -> Table:
    cells = _Cells(results, resamples, seed)
    variant = paper.main_variant
    method_names = [m.name if m.key != paper.paper_method else f"{m.name} (paper)" for m in paper.methods]
    columns = ["Dataset", "Metric", "Trained on", *method_names, "Ours", "Δ", "95% CI"]
    table = Table(
        key="table1",
        title="Table 1 — zero-shot anomaly detection on 14 datasets",
        caption=paper.table1_caption,
        columns=columns,
        align="lll" + "r" * (len(method_names) + 2) + "c",
        header_groups=[[("", 3), (f"Paper, {paper.table1_location}", len(method_names)), ("This run", 3)]],
    )
    paper_index = [m.key for m in paper.methods].index(paper.paper_method)
    missing, labelled = [], {}
    for level in ("image", "pixel"):
        for domain in dict.fromkeys(d.domain for d in paper.datasets):
            group = [d for d in paper.datasets if d.domain == domain and level in d.values]
            if not group:
                continue
            names = ", ".join(METRIC_NAMES.get(m, m) for m in paper.metrics[level])
            table.sections[len(table.rows)] = f"{domain.capitalize()}, {LEVEL_NAMES[level]} ({names})"
            for d in group:
                sources = cells.sources(d.key, variant) or [None]
                if sources == [None]:
                    missing.append(d)
                for source in sources:
                    label = d.display_name
                    if source:
                        evaluations = cells.evaluations(d.key, source, variant)
                        label = data_label(d.display_name, evaluations)
                        labelled.setdefault(label, (d.key, evaluations))
                    for i, metric in enumerate(paper.metrics[level]):
                        theirs = [d.values[level][m.key][i] for m in paper.methods]
                        s = cells.get(source, d.key, variant, level, metric) if source else None
                        ci = ""
                        if level == "image" and metric == "auroc":
                            ci = fmt_ci(cells.ci(source, d.key, variant)) if source else MISSING
                        table.rows.append(
                            [
                                label if i == 0 else "",
                                METRIC_NAMES.get(metric, metric),
                                (source or MISSING) if i == 0 else "",
                                *(f"{v:.1f}" for v in theirs),
                                *ours_and_delta(s, theirs[paper_index], cells.zero_shot(source, d.key, variant)),
                                ci,
                            ]
                        )
    _common_notes(table, paper, paper.table1_location, results)
    table.notes.append(
        f"Ours: the model with all three modules (variant “{variant}”), trained on the source named in "
        "“Trained on” and evaluated zero-shot. PRO is the AnomalyCLIP-compatible AUPRO "
        "(aupro_anomalyclip). 95% CI: stratified bootstrap over test images, image AUROC only."
    )
    for label, (key, evaluations) in labelled.items():
        _data_notes(table, key, label, evaluations)
    for d in missing:
        table.notes.append(f"{MISSING} {d.display_name}: no result in {results.root.as_posix()}/eval/*/{d.key}/{variant}/.")
    return table


def table2(paper: PaperResults, results: Results, resamples: int = 1000, seed: int = 0) -> Table:
    cells = _Cells(results, resamples, seed)
    names = {d.key: data_label(d.display_name, cells.evaluations(d.key)) for d in paper.datasets}
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
        _data_notes(table, d, names.get(d, d), cells.evaluations(d))
    table.notes += [f"Several sources for {m}." for m in multi]
    if missing:
        table.notes.append(f"{MISSING} no result for: {', '.join(missing)}.")
    return table


CUSTOM_METRICS = {"image": ("auroc", "ap", "f1_max"), "pixel": ("auroc", "ap", "aupro_anomalyclip")}


def custom_table(results: Results, main_variant: str = "full") -> Table | None:
    """Every model evaluated on a user's own dataset (config ``custom_targets``), the main variant first
    for each source; None when there is none."""
    evaluations = [e for e in results.evaluations if e.custom]
    if not evaluations:
        return None
    summary = summarise(results.tidy())
    metric_columns = [f"{METRIC_NAMES[m]}" for level in CUSTOM_METRICS for m in CUSTOM_METRICS[level]]
    table = Table(
        key="custom",
        title="Your datasets — zero-shot results on custom targets",
        caption="Each trained model evaluated zero-shot on the datasets of the workflow's custom_targets "
        "(wmoe-clip prepare folder). The paper has no numbers for them.",
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
