"""``wmoe-clip train``: train the config's method (a variant of it, if it has them) on a source dataset's test split."""

from __future__ import annotations

import argparse

from ..config import shipped_configs
from ..model.registry import variants_help


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on a source dataset (resumes an interrupted run)",
        description="Train the learnable parameters of the config's method (its `method:` key) on the test split "
        "of the source dataset. Writes "
        "DIR/history.json, DIR/run.json and, last, DIR/model.pt. Until then DIR/state/ holds the checkpoint of "
        "the last epoch, from which the same command resumes after an interruption; a command with other "
        "settings starts afresh, and a finished training removes its state.",
    )
    p.add_argument("--config", required=True,
                   help=f"YAML file or shipped config name ({', '.join(shipped_configs())})")
    p.add_argument("--source", required=True, help="registry key of the training dataset, e.g. visa")
    p.add_argument("--data", required=True, help="prepared folder of the source dataset (holds meta.json)")
    p.add_argument("--variant", help=f"variant of the config's method ({variants_help()}; default: the "
                   "config's own settings); methods without variants take none")
    p.add_argument("--out", required=True, help="output folder DIR")
    p.add_argument("--seed", type=int, help="random seed (default: train.seed of the config)")
    p.add_argument("--epochs", type=int, help="number of epochs (default: train.epochs of the config)")
    p.add_argument("--cache-dir", help="feature cache root when train.feature_cache is on "
                   "(default: $WMOE_CLIP_CACHE_DIR or ~/.cache/wmoe-clip/features)")
    p.add_argument("--verify-cache", action="store_true", help="check the checksum of every array of the feature "
                   "cache before training (a damaged one is rebuilt); without it only sizes and headers are checked "
                   "when the arrays are read through memory maps")
    p.add_argument("--restart", action="store_true",
                   help="ignore the state of an interrupted run in DIR/state and start again at epoch 0")
    p.add_argument("--force", action="store_true", help="replace files in DIR named model.pt, run.json or "
                   "history.json that are not earlier outputs of a training (never an input)")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..engine.tracking import Tracker
    from ..engine.train import apply_overrides, train

    cfg = apply_overrides(load_config(args.config), args.variant, args.seed, args.epochs)
    tracker = Tracker(enabled=not args.no_tracking)
    run = train(cfg, args.source, args.data, args.out, tracker=tracker, cache_dir=args.cache_dir,
                progress=not args.quiet, restart=args.restart, force=args.force, inputs=(args.config,),
                verify_cache=args.verify_cache)
    print(f"trained {run['variant']} on {run['source']} (seed {run['seed']}, {run['epochs']} epochs) -> {args.out}/model.pt")
    tracker.report_failure("train", f"{args.out}/run.json")
    return 0
