"""``wmoe-clip prepare DATASET --raw RAW_DIR --out OUT_DIR``: native layout -> meta.json.

``DATASET`` is a registry key, or ``folder`` for a user's own dataset (``--raw DIR`` of class folders
in the MVTec convention, or ``--csv FILE``; see ``wmoe_clip.data.custom``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..data import registry
from ._options import add_protocol, registry_protocols

CUSTOM = registry.CUSTOM_COMMAND
SHOW = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    choices = (*registry.keys(), CUSTOM)
    p = subparsers.add_parser(
        "prepare",
        help="convert a dataset in its native layout (or your own folder / CSV) into OUT_DIR/meta.json",
        description="Read DATASET as extracted in RAW_DIR (wrapping folders, and the dataset's folder inside a "
        "multi-dataset pack, are found by themselves; so is the protocol of a dataset with several) and "
        "write OUT_DIR/meta.json and OUT_DIR/prepare.json (counts vs the registry, mask value histogram). "
        "Registry classes absent from RAW_DIR (a partial download) are left out with a warning. "
        f"DATASET '{CUSTOM}' reads your own data: --raw DIR with one folder per class (good/ normal, any other "
        "folder anomalous, masks in ground_truth/<defect>/ named after the image, with or without _mask), "
        "or --csv FILE with rows path,label[,mask][,class] relative to the CSV.",
    )
    p.add_argument("dataset", choices=choices, metavar="DATASET", help=", ".join(choices))
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--raw", help="folder where the official archive was extracted (or your own folder; "
                        f"for '{CUSTOM}' a .csv file is read as --csv)")
    source.add_argument("--csv", help=f"'{CUSTOM}' only: CSV listing path,label[,mask][,class]")
    p.add_argument("--out", required=True, help="output folder for meta.json and prepare.json")
    add_protocol(p, f"protocol of a dataset with several ({registry_protocols()}); default: detected from the layout")
    p.add_argument("--name", help=f"'{CUSTOM}' only: the dataset's name (default: from the folder or CSV name)")
    p.add_argument("--strict", action="store_true", help="fail when classes are missing or counts differ from the "
                   "registry")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable images, missing or orphan masks and stray folders with a warning "
                   "(listed in prepare.json) instead of failing")
    p.add_argument("--force", action="store_true", help="replace files at OUT_DIR/meta.json and prepare.json that "
                   "are not earlier outputs of prepare (never a file of the raw data)")
    p.set_defaults(func=run)


def default_name(path: Path) -> str:
    """A dataset name from a folder or CSV name: lower case, other characters as '_'."""
    stem = path.resolve().parent.name if path.suffix.lower() == ".csv" else path.resolve().name
    name = re.sub(r"[^a-z0-9_]+", "_", stem.lower()).strip("_")
    return name if re.match(r"^[a-z]", name) else f"data_{name}".rstrip("_")


def run(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare, prepare_custom
    from ..errors import WMoEError

    if args.dataset == CUSTOM:
        if args.protocol or args.strict:
            raise WMoEError(f"prepare {CUSTOM}: --protocol and --strict apply to registry datasets only")
        csv_path = args.csv or (args.raw if args.raw.lower().endswith(".csv") else None)
        raw = None if csv_path else args.raw
        name = args.name or default_name(Path(csv_path or raw))
        result = prepare_custom(name, args.out, raw=raw, csv_path=csv_path, skip_bad=args.skip_bad, force=args.force)
    else:
        if args.csv or args.name:
            raise WMoEError(f"prepare {args.dataset}: --csv and --name are for '{CUSTOM}' (your own dataset)")
        result = prepare(args.dataset, args.raw, args.out, strict=args.strict, skip_bad=args.skip_bad,
                         protocol=args.protocol, force=args.force)
    key = result.report["dataset"]
    for problem in result.problems:
        print(f"warning: skipped {problem}", file=sys.stderr)
    if result.missing_classes:
        print(f"warning: {key}: {len(result.missing_classes)} registry class(es) not found, prepared without them "
              f"(see prepare.json): {', '.join(result.missing_classes)}", file=sys.stderr)
    for line in result.warnings:
        print(f"warning: {key}: {line}", file=sys.stderr)
    ignored = result.report["ignored"]
    if ignored:
        shown = "; ".join(f"{i['path']} ({i['reason']})" for i in ignored[:SHOW])
        more = f"; ... and {len(ignored) - SHOW} more" if len(ignored) > SHOW else ""
        print(f"note: {key}: {len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'} not used, listed in "
              f"prepare.json: {shown}{more}", file=sys.stderr)
    if result.differences:
        print(f"{key}: counts differ from the registry:", file=sys.stderr)
        for line in result.differences:
            print(f"  {line}", file=sys.stderr)
    total = result.report["counts"]["total"]["found"]
    protocol = f" ({result.report['protocol']})" if result.report.get("protocol") else ""
    print(f"{key}{protocol}: {total[0]} normal / {total[1]} anomalous test images -> {result.meta_path}")
    return 0
