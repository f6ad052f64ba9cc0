"""``wmoe-clip check-params [PARAMS] [--marker FILE]``: validate DVC's composed params before any stage runs.

Snakemake validates every run config when it builds its DAG; DVC has no such moment, so dvc.yaml's
first stage runs this command and every stage that would otherwise start first depends on its
marker. Each method of ``run_configs`` is composed exactly as its ``run_config`` stage composes it
(its base, its own ``set``, the shared ``run_config.set``, its method) and validated whole: a bad
value (``-S run_config.set.train.epochs=0``) fails here, in one line, before a dataset is downloaded.
The marker's text never changes, so a params change that passes the check reruns nothing else.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ..errors import WMoEError

MARKER_TEXT = "the run configs composed from params.yaml are valid\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check-params",
        help="validate the run configs that DVC's params.yaml composes, before any stage runs",
        description="Compose every method's run config from PARAMS (run_configs.<method>.base and .set, then "
        "run_config.set, then the method) as the run_config stages of dvc.yaml do, and validate each; "
        "write nothing but --marker.",
    )
    p.add_argument("params", nargs="?", default="params.yaml", metavar="PARAMS", help="default: params.yaml")
    p.add_argument("--marker", help="file to write when every run config is valid (a dependency of the first stages)")
    p.set_defaults(func=run)


def check_params(params: str | Path) -> list[str]:
    """Validate every run config of ``params``; returns the methods checked."""
    from ..config import ConfigError, config_with_overrides
    from .run_config import overrides_from_file

    try:
        doc = yaml.safe_load(Path(params).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise WMoEError(f"{params}: cannot read it ({str(exc).splitlines()[0]})") from None
    methods = doc.get("run_configs")
    if not isinstance(methods, dict) or not methods:
        raise WMoEError(f"{params}: no run_configs mapping (method -> base, input, set); compose params.yaml "
                        "with `dvc exp run` or from config/dvc/")
    for method, item in methods.items():
        if not isinstance(item, dict) or "base" not in item:
            raise WMoEError(f"{params}: run_configs.{method} has no base config")
        overrides = {**overrides_from_file(f"{params}:run_configs.{method}.set"),
                     **overrides_from_file(f"{params}:run_config.set"), "method": method}
        try:
            config_with_overrides(item["base"], overrides, f"{params}: the run config of {method}")
        except ConfigError as exc:
            raise WMoEError(f"{exc}; nothing has run (set another value with dvc exp run -S KEY=VALUE or in "
                            "config/dvc/)") from None
    return list(methods)


def run(args: argparse.Namespace) -> int:
    from ..io import write_text

    methods = check_params(args.params)
    if args.marker:
        write_text(args.marker, MARKER_TEXT)
    print(f"{args.params}: the run configs of {', '.join(methods)} are valid")
    return 0
