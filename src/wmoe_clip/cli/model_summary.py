"""``wmoe-clip model-summary``: learnable parameters per module and in total, for a config and variant."""

from __future__ import annotations

import argparse
import dataclasses

from ..config import load_config


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "model-summary",
        help="print the learnable parameter count per module",
        description="Build the model of a config (frozen backbone with random weights, nothing is "
        "downloaded) and print its learnable parameters per module and in total.",
    )
    p.add_argument("--config", default="vit_l14_336", help="YAML file or shipped config name (default: vit_l14_336)")
    p.add_argument("--variant", default="full", help="Table 2 variant: base, ctds, ctds_wcma, ctds_samoe, full")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model import build_model
    from ..model.summary import parameter_table

    cfg = load_config(args.config, args.variant)
    # Counts do not depend on the weights, so the backbone is built without loading any.
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=None))
    print(f"{cfg.model.backbone} at {cfg.model.image_size} px, variant {cfg.variant}")
    print(parameter_table(build_model(cfg)))
    return 0
