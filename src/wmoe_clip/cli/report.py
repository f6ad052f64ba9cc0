"""``wmoe-clip report --results DIR --out DIR``: Table 1, Table 2 and the HTML page."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="render Table 1 / Table 2 beside the paper's numbers as HTML and LaTeX",
        description="Read RESULTS/eval/{source}/{target}/{run}/seed{N}.json ({run}: a WMoE-CLIP variant, or a "
        "baseline's method name: anomalyclip, clip with source none) and the training histories, and write "
        "OUT/index.html (self-contained: tables, figures, training curves, run summary with the encoder passes), "
        "OUT/table1.tex and OUT/table2.tex (standalone booktabs documents). Table 1 shows, for every method run, "
        "ours beside the published number of that method with Δ. Missing results show as '–'; a "
        "folder without any evaluation, an invalid file, a NaN or a mean that disagrees with its per-class "
        "values is an error naming the file.",
    )
    p.add_argument("--results", required=True, help="results folder, e.g. results or results/demo")
    p.add_argument("--out", required=True, help="report folder, e.g. reports/paper")
    p.add_argument("--paper", default="config/paper_results.yaml",
                   help="the paper's numbers and the baselines' references (default: %(default)s)")
    p.add_argument("--resamples", type=int, default=1000,
                   help="bootstrap resamples for the image AUROC CIs, at least 1 (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap, 0 or more (default %(default)s)")
    p.add_argument("--force", action="store_true", help="replace files at OUT's table1.tex, table2.tex and index.html "
                   "that are not earlier reports (never an input)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import build_report

    for path in build_report(args.results, args.out, args.paper, args.resamples, args.seed, force=args.force):
        print(f"wrote {path}")
    return 0
