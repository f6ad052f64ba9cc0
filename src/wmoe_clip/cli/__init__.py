"""The ``wmoe-clip`` command line: one entry point, one module per subcommand.

Each module in this package exposes ``register(subparsers)``, which adds its subcommand and sets
``func`` on the parser; ``main`` discovers them, so a new command is a new file and nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .. import __version__
from ..errors import WMoEError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wmoe-clip",
        description="WMoE-CLIP zero-shot anomaly detection: data, training, evaluation and reports.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (WMoEError, FileNotFoundError) as exc:
        # Expected failures (bad input, missing files) get a one-line message, not a traceback.
        print(f"wmoe-clip {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
