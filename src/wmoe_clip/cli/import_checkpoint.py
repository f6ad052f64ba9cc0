"""``wmoe-clip import-checkpoint --from METHOD FILE --config CONFIG --out model.pt``: a method's released
checkpoint (the AnomalyCLIP authors' ``{"prompt_learner": ...}`` files) as a wmoe-clip checkpoint."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ..model.registry import importers

    p = subparsers.add_parser(
        "import-checkpoint",
        help="convert a method's released checkpoint (AnomalyCLIP's) into a wmoe-clip model.pt",
        description="Read FILE with torch.load(weights_only=True) (nothing in it is run), check its keys, shapes "
        "and stored token embeddings against the run config CONFIG (whose `method` must be the --from "
        "method, and whose CLIP weights it needs) and write OUT, a checkpoint that wmoe-clip evaluate and "
        "predict read. Anything else is refused with one line naming the problem.",
    )
    p.add_argument("--from", dest="method", required=True, choices=importers(),
                   help="the method whose released checkpoint FILE is")
    p.add_argument("file", metavar="FILE", help="the released checkpoint, e.g. AnomalyCLIP's checkpoints/9_12_4_multiscale/epoch_15.pth")
    p.add_argument("--config", required=True,
                   help="run config of the method (YAML file or shipped name, e.g. anomalyclip), with the CLIP weights "
                   "the checkpoint was trained with")
    p.add_argument("--out", required=True, help="the wmoe-clip checkpoint to write, e.g. model.pt")
    p.add_argument("--force", action="store_true",
                   help="replace a file at --out that is not a wmoe-clip checkpoint (never FILE or CONFIG)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..errors import WMoEError
    from ..io import check_output
    from ..model import save_checkpoint
    from ..model.registry import get

    spec = get(args.method)
    check_output(args.out, "--out", "checkpoint", inputs=(args.file, args.config), force=args.force)
    cfg = load_config(args.config)
    if cfg.method != spec.name:
        raise WMoEError(f"--config {args.config} is a {cfg.method} run config; --from {spec.name} needs one with "
                        f"method: {spec.name} (e.g. the shipped {spec.name} config)")
    model = spec.import_checkpoint(cfg, args.file)
    save_checkpoint(model, args.out)
    print(f"imported {spec.display_name} checkpoint {args.file} -> {args.out}")
    return 0
