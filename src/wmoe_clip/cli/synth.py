"""``wmoe-clip synth DATASET --dest RAW_DIR``: a synthetic stand-in in the dataset's native layout."""

from __future__ import annotations

import argparse

from ..data import registry
from ._options import add_protocol, registry_protocols


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..data.synth import CUSTOM, DEFAULT_SIZE

    choices = (*registry.keys(), CUSTOM)
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic miniature of a dataset in its native layout",
        description="Write textured images with planted defects (spots, scratches, texture swaps) and their "
        "masks into RAW_DIR, laid out and encoded like the official archive of DATASET (in the layout of "
        f"--protocol for a dataset with several). '{CUSTOM}' writes a user's own dataset as `wmoe-clip prepare "
        f"{CUSTOM}` reads it: class folders, or with --protocol csv a CSV listing.",
    )
    p.add_argument("dataset", choices=choices, metavar="DATASET", help=", ".join(choices))
    # --dest like `wmoe-clip download`, so both data sources are one command shape (dvc.yaml's `raw`).
    p.add_argument("--dest", "--out", dest="out", required=True, metavar="RAW_DIR",
                   help="raw dataset folder to write; replaced as a whole when it is empty or an earlier synth output")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="test images per class (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    add_protocol(p, f"layout of the protocol ({registry_protocols()}; {CUSTOM}: csv); default: the registry's "
                 f"default, class folders for {CUSTOM}")
    p.add_argument("--force", action="store_true",
                   help="replace RAW_DIR even when it holds something else than a synth output (it is deleted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.synth import generate

    truth = generate(args.dataset, args.out, size=args.size, seed=args.seed, protocol=args.protocol, force=args.force)
    n_anom = sum(r["anomaly"] for r in truth if r["split"] == "test")
    n_test = sum(r["split"] == "test" for r in truth)
    protocol = f" ({args.protocol})" if args.protocol else ""
    print(f"{args.dataset}{protocol}: wrote {n_test - n_anom} normal / {n_anom} anomalous test images to {args.out}")
    return 0
