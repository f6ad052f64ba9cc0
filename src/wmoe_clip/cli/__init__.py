"""The ``wmoe-clip`` command line: one entry point, one module per subcommand.

Each module in this package exposes ``register(subparsers)``, which adds its subcommand and sets
``func`` on the parser; ``main`` discovers them, so a new command is a new file and nothing else.

Every command fails the same way: one line ``wmoe-clip COMMAND: error: ...`` on stderr and exit
status 2, for the project's own errors and for the operating system's (permission denied, read-only
file system, disk full, a missing file). A traceback that reaches the user is a bug.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys

from .. import __version__
from ..errors import WMoEError, os_error_message


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
    except WMoEError as exc:
        return _fail(args.command, str(exc))
    except OSError as exc:
        return _fail(args.command, os_error_message(exc))
    except KeyboardInterrupt:
        print(f"wmoe-clip {args.command}: interrupted; outputs are written atomically, so none was left "
              "half-written", file=sys.stderr)
        return 130


# torch re-raises an error of a DataLoader worker with the worker's traceback in its message.
_WORKER_ERROR = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def _fail(command: str, message: str) -> int:
    # Expected failures (bad input, files, disks) get a one-line message, not a traceback.
    if _WORKER_ERROR.match(message):
        message = re.sub(r"^[\w.]+: ", "", message.rstrip().splitlines()[-1], count=1)
    print(f"wmoe-clip {command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
