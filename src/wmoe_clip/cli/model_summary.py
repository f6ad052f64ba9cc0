"""``wmoe-clip model-summary``: learnable parameters per module and in total, for a config's method."""

from __future__ import annotations

import argparse
import dataclasses

from ..config import load_config
from ..model.registry import check_variant, get, method_names, run_name, variants_help


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "model-summary",
        help="print the learnable parameter count per module",
        description="Build the model of a config (frozen backbone with random weights, nothing is "
        "downloaded) and print its learnable parameters per module and in total.",
    )
    p.add_argument("--config", default="vit_l14_336", help="YAML file or shipped config name (default: vit_l14_336)")
    p.add_argument("--method", choices=method_names(),
                   help="the method to build on the config (default: the config's `method`)")
    p.add_argument("--variant", help=f"variant of a method that has them ({variants_help()}; default: the "
                   "config's own settings, full for vit_l14_336)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model import build_model
    from ..model.summary import parameter_table

    cfg = load_config(args.config)
    if args.method and args.method != cfg.method:
        cfg = cfg.for_method(args.method)
    # Counts do not depend on the weights, so the backbone is built without loading any.
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=None))
    check_variant(cfg.method, args.variant)
    if args.variant:
        cfg = cfg.with_variant(args.variant)
    table = parameter_table(build_model(cfg))
    print(f"{get(cfg.method).display_name} ({run_name(cfg)}) on {cfg.model.backbone} at {cfg.model.image_size} px")
    print(table)
    return 0
