"""Reports: Table 1 and Table 2 from a results folder, beside the paper's numbers.

``build_report(results_dir, out_dir)`` writes ``index.html`` (one self-contained page: tables,
the section of users' own datasets when there are evaluations on them, embedded figures, training
curves, run summary with the encoder passes), ``table1.tex`` and ``table2.tex`` (standalone booktabs
documents). Table 1 has a group of columns for every method run (WMoE-CLIP and the baselines run
beside it) beside the paper's columns, each with the published number of its protocol (provenance on
hover, Δ only where the protocols match); Table 2 is WMoE-CLIP's ablation alone; per-class tables
(collapsed) put the official per-class logs of released checkpoints beside ours. Everything
is read from the results folder and the paper's numbers (``config/paper_results.yaml``); a missing
result is a "–" with a note, never a crash.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from .. import __version__
from ..errors import WMoEError
from ..io import check_output, check_writable, write_files
from ..plan import UNTRAINED
from .encoder import summary_rows
from .figures import data_uri, file_data_uri, training_curves_png
from .paper import DEFAULT_PATH, PaperResults, load_paper_results
from .render import render_html, render_latex
from .results import Results, load_results
from .references import warn
from .tables import custom_table, data_label, per_class_tables, table1, table2

__all__ = ["build_report", "custom_table", "load_paper_results", "load_results", "table1", "table2"]


def _run_summary(results: Results, paper: PaperResults) -> list[tuple[str, str]]:
    evals = results.evaluations
    seeds = sorted({e.seed for e in evals})
    software = {(e.data.get("software") or {}).get("git_commit") for e in evals} - {None}
    dirty = any((e.data.get("software") or {}).get("git_dirty") for e in evals)
    # Model and training settings of the paper's method (a baseline's config has its own numerics).
    main = [e for e in evals if e.method == paper.paper_method] or evals
    cfg = (main[0].data.get("config") or {}) if main else {}
    model, train = cfg.get("model", {}), cfg.get("train", {})
    inference = sum((e.data.get("timings") or {}).get("inference_s", 0.0) or 0.0 for e in evals)
    runs: dict[str, set[str]] = {}
    for e in evals:
        runs.setdefault(e.method, set()).add(e.variant)
    methods = [f"{paper.method_name(m)} ({', '.join(sorted(r))})" if r != {m} else paper.method_name(m)
               for m, r in sorted(runs.items(), key=lambda mr: (mr[0] != paper.paper_method, mr[0]))]
    rows = [
        ("Results folder", results.root.as_posix()),
        ("Data", _data_description(results)),
        ("Evaluations", f"{len(evals)} ({len({(e.source, e.target, e.variant) for e in evals})} cells × seeds {seeds or '–'})"),
        ("Trainings with a history", str(len(results.trainings))),
        ("Targets", ", ".join(sorted({e.target for e in evals})) or "–"),
        ("Methods (runs)", "; ".join(methods) or "–"),
        (f"Model ({paper.method_name(paper.paper_method)})",
         f"{model.get('backbone', '–')} at {model.get('image_size', '–')} px, pretrained: {model.get('pretrained', '–')}"),
        ("Training", f"{train.get('epochs', '–')} epochs, batch {train.get('batch_size', '–')}, lr {train.get('lr', '–')}"),
        *summary_rows(results),
        ("Code", f"git {', '.join(sorted(software)) or 'unknown'}{' (uncommitted changes)' if dirty else ''}"),
        ("Inference time (all evaluations)", f"{inference:.1f} s"),
        ("Paper numbers", f"{paper.path.as_posix()} ({paper.citation()})"),
        ("Published numbers of the methods", "; ".join(f"{s.citation}: {s.path.as_posix()}"
                                                      for s in paper.references.sources if s.key != "paper") or "–"),
        ("Report", f"wmoe-clip {__version__}"),
    ]
    return rows


def _data_description(results: Results) -> str:
    """Which data the numbers come from; "the real datasets" only when no input was a synthetic stand-in."""
    if not results.synthetic:
        return "the real datasets"
    if results.all_synthetic:
        return "synthetic stand-ins (wmoe-clip synth)"
    names = sorted({e.target for e in results.evaluations if e.synthetic}
                   | {t.source for t in results.trainings if t.run.get("synthetic")})
    return f"mixed: synthetic stand-ins (wmoe-clip synth) for {', '.join(names)}, real data elsewhere"


def _figures(results: Results, paper: PaperResults) -> list[dict[str, str]]:
    variant = paper.main_variant
    shown = {}
    for e in sorted(results.evaluations, key=lambda e: (e.variant != variant, e.source, e.target, e.variant, e.seed)):
        key = (e.source, e.target, e.variant)
        if key not in shown and e.figure_path is not None:
            model = (f"variant {e.variant}" if e.method == paper.paper_method else paper.method_name(e.method))
            trained = "training-free" if e.source == UNTRAINED else f"trained on {e.source}"
            caption = f"{data_label(e.data['dataset']['display_name'], [e])} — {trained}, {model}, seed {e.seed}"
            shown[key] = {"uri": file_data_uri(e.figure_path), "caption": caption}
    return list(shown.values())


def build_report(
    results_dir: str | Path,
    out_dir: str | Path,
    paper_path: str | Path = DEFAULT_PATH,
    resamples: int = 1000,
    seed: int = 0,
    force: bool = False,
) -> list[Path]:
    """Write index.html, table1.tex and table2.tex into ``out_dir``; return their paths.

    ``resamples`` (at least 1) and ``seed`` (0 or more) drive the bootstrap CIs of the image AUROC.
    The three files are written together once everything is rendered (index.html last); ``force``
    replaces files at their paths that are not earlier reports (never an input).
    """
    if resamples < 1:
        raise WMoEError(f"--resamples must be at least 1 (bootstrap resamples of the image-AUROC CIs), got {resamples}")
    if seed < 0:
        raise WMoEError(f"--seed must be 0 or more (seed of the bootstrap), got {seed}")
    check_writable(out_dir, "--out", folder=True)
    out = Path(out_dir)
    paths = [out / "table1.tex", out / "table2.tex", out / "index.html"]
    for path in paths:
        check_output(path, "--out", "report-html" if path.suffix == ".html" else "report-tex",
                     inputs=(results_dir, paper_path), force=force)
    results = load_results(results_dir)
    paper = load_paper_results(paper_path)
    warn(paper.references.problems)
    tables = [table1(paper, results, resamples, seed), table2(paper, results, resamples, seed)]
    custom = custom_table(results, paper.main_variant, {d.key for d in paper.datasets})
    curves = training_curves_png(results.trainings)
    html = render_html(
        tables + ([custom] if custom else []),
        per_class=per_class_tables(paper, results),
        title="WMoE-CLIP reproduction" + (" — synthetic demo" if results.synthetic else ""),
        results_dir=results.root.as_posix(),
        generated=_dt.datetime.now().isoformat(timespec="seconds"),
        synthetic=results.synthetic,
        summary=_run_summary(results, paper),
        curves=data_uri(curves) if curves else None,
        figures=_figures(results, paper),
    )
    texts = [render_latex(tables[0]), render_latex(tables[1]), html]
    write_files([(path, text.encode("utf-8")) for path, text in zip(paths, texts)])
    return paths
