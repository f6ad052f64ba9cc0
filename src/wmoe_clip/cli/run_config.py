"""``wmoe-clip run-config BASE [--overrides FILE[:KEY] ...] [--set KEY=VALUE ...] --out FILE``: write one
resolved run config.

The workflow trains every model from such a file, so the exact configuration of a run (shipped
config, the workflow's overrides, the path of downloaded weights) is itself a versioned output.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from ..errors import WMoEError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run-config",
        help="write a resolved run config: a shipped config or YAML file plus dotted overrides",
        description="Load BASE (a shipped config name such as tiny or vit_l14_336, or a YAML file), set each "
        "KEY=VALUE (dotted key, YAML value: --set train.epochs=2 --set model.pretrained=weights.pt "
        "--set model.wmoe_clip.alpha=0.4), validate the result and write every field to FILE. Setting method "
        "gives the base's shared settings that method's defaults; keys of another method's section "
        "(model.OTHER...) are left out.",
    )
    p.add_argument("base", metavar="BASE", help="shipped config name or YAML file")
    p.add_argument("--overrides", metavar="FILE[:KEY]", action="append", default=[],
                   help="YAML file of keys to set (nested or dotted), or the mapping at dotted KEY in it, "
                   "e.g. params.yaml:run_config.set; repeatable, applied in order, before --set")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one dotted key; repeatable")
    p.add_argument("--out", required=True, help="YAML file to write")
    p.add_argument("--force", action="store_true",
                   help="replace a file at --out that is not a resolved run config (never an input)")
    p.set_defaults(func=run)


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """``a.b.c=value`` options as a mapping of dotted keys to values (each value parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise WMoEError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=2")
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise WMoEError(f"--set {item!r}: the value is not valid YAML ({str(exc).splitlines()[0]})") from None
    return out


def overrides_from_file(spec: str) -> dict[str, Any]:
    """``FILE[:KEY]`` as dotted key -> value: the leaves of the YAML mapping (at ``KEY``) in FILE."""
    path, _, key = spec.partition(":")
    try:
        node = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise WMoEError(f"--overrides {spec}: cannot read {path}: {err}") from err
    for part in key.split(".") if key else []:
        if not isinstance(node, dict) or part not in node:
            raise WMoEError(f"--overrides {spec}: {path} has no key {key}")
        node = node[part]
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise WMoEError(f"--overrides {spec}: expected a mapping of run-config keys, got {node!r}")
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif prefix:
            flat[prefix] = value

    walk("", node)
    return flat


def run(args: argparse.Namespace) -> int:
    from ..config import config_with_overrides
    from ..io import check_output, write_text
    from ..model.registry import get

    inputs = [args.base] + [spec.partition(":")[0] for spec in args.overrides]
    check_output(args.out, "--out", "run-config", inputs=inputs, force=args.force)
    overrides = {}
    for spec in args.overrides:
        overrides.update(overrides_from_file(spec))
    overrides.update(parse_sets(args.sets))
    options = [f"--overrides {o}" for o in args.overrides] + [f"--set {s}" for s in args.sets]
    cfg = config_with_overrides(args.base, overrides, f"{args.base} with {' '.join(options) or 'no overrides'}")
    header = f"# Resolved run config: {args.base}" + "".join(f" {o}" for o in options) + "\n"
    write_text(args.out, header + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    note = "; its variants are set per training with --variant" if get(cfg.method).variants else ""
    print(f"wrote {args.out} (method {cfg.method}{note})")
    return 0
