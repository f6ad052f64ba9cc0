"""``wmoe-clip prepare DATASET --raw RAW_DIR --out OUT_DIR``: native layout -> meta.json."""

from __future__ import annotations

import argparse
import sys

from ..data import registry


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="convert a dataset in its native layout into OUT_DIR/meta.json",
        description="Read DATASET as extracted in RAW_DIR (wrapping folders, and the dataset's folder inside a "
        "multi-dataset pack, are found by themselves) and "
        "write OUT_DIR/meta.json and OUT_DIR/prepare.json (counts vs the registry, mask value histogram).",
    )
    p.add_argument("dataset", choices=registry.keys(), metavar="DATASET", help=", ".join(registry.keys()))
    p.add_argument("--raw", required=True, help="folder where the official archive was extracted")
    p.add_argument("--out", required=True, help="output folder for meta.json and prepare.json")
    p.add_argument("--strict", action="store_true", help="fail when counts differ from the registry")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable images, missing or orphan masks and stray folders with a warning "
                   "(listed in prepare.json) instead of failing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare

    result = prepare(args.dataset, args.raw, args.out, strict=args.strict, skip_bad=args.skip_bad)
    for problem in result.problems:
        print(f"warning: skipped {problem}", file=sys.stderr)
    if result.differences:
        print(f"{args.dataset}: counts differ from the registry:", file=sys.stderr)
        for line in result.differences:
            print(f"  {line}", file=sys.stderr)
    total = result.report["counts"]["total"]["found"]
    print(f"{args.dataset}: {total[0]} normal / {total[1]} anomalous test images -> {result.meta_path}")
    return 0
