"""``wmoe-clip run-config BASE [--set KEY=VALUE ...] --out FILE``: write one resolved run config.

The workflow trains every model from such a file, so the exact configuration of a run (shipped
config, the workflow's overrides, the path of downloaded weights) is itself a versioned output.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import yaml

from ..errors import WMoEError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run-config",
        help="write a resolved run config: a shipped config or YAML file plus dotted overrides",
        description="Load BASE (a shipped config name such as tiny or vit_l14_336, or a YAML file), set each "
        "KEY=VALUE (dotted key, YAML value: --set train.epochs=2 --set model.pretrained=weights.pt), "
        "validate the result and write every field to FILE.",
    )
    p.add_argument("base", metavar="BASE", help="shipped config name or YAML file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one dotted key; repeatable")
    p.add_argument("--out", required=True, help="YAML file to write")
    p.set_defaults(func=run)


def apply_overrides(data: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``a.b.c=value`` set (the value parsed as YAML)."""
    out = copy.deepcopy(data)
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise WMoEError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=2")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise WMoEError(f"--set {item!r}: {part} is a value, not a section")
            node = child
        node[leaf] = yaml.safe_load(text)
    return out


def run(args: argparse.Namespace) -> int:
    from ..config import config_from_dict, load_config
    from ..io import write_text

    base = load_config(args.base).to_dict()
    cfg = config_from_dict(apply_overrides(base, args.sets), f"{args.base} with {' '.join(args.sets) or 'no overrides'}")
    header = f"# Resolved run config: {args.base}" + "".join(f" --set {s}" for s in args.sets) + "\n"
    write_text(args.out, header + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    print(f"wrote {args.out} (variant switches are set per training with --variant)")
    return 0
