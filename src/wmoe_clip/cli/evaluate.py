"""``wmoe-clip evaluate``: zero-shot evaluation of a model on a target dataset."""

from __future__ import annotations

import argparse

from ._options import add_model_source


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a model on a target dataset (writes the eval JSON and a figure)",
        description="Run the model (a checkpoint, or with --config the run config of a method that does not "
        "train, such as clip) over the target's test split class by class, compute the metrics that "
        "apply to the dataset, and write the evaluation JSON (format wmoe-clip/eval, version 1) and a "
        "figure of sample anomaly maps.",
    )
    add_model_source(p)
    p.add_argument("--target", required=True,
                   help="registry key of the target dataset, e.g. mvtec, or the name of your own (prepare folder)")
    p.add_argument("--data", required=True, help="prepared folder of the target dataset (holds meta.json)")
    p.add_argument("--out", required=True, help="evaluation JSON to write")
    p.add_argument("--figure", help="figure PNG to write (default: the JSON's path with .png)")
    p.add_argument("--train-run", help="the training's run.json (default: run.json beside the checkpoint); "
                   "it must record this checkpoint's sha256")
    p.add_argument("--source", help="training dataset key, when no run.json records it")
    p.add_argument("--allow-same-source", action="store_true",
                   help="evaluate a model on the dataset it was trained on; the JSON is marked not zero-shot")
    p.add_argument("--feature-cache", action="store_true",
                   help="read the frozen encoder's outputs from the feature cache (built if missing)")
    p.add_argument("--cache-dir", help="feature cache root (default: $WMOE_CLIP_CACHE_DIR or ~/.cache/wmoe-clip/features)")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.evaluate import evaluate
    from ..engine.tracking import Tracker

    tracker = Tracker(enabled=not args.no_tracking)
    doc = evaluate(args.checkpoint, args.target, args.data, args.out, config=args.config, figure=args.figure,
                   train_run=args.train_run, source=args.source, tracker=tracker,
                   feature_cache=args.feature_cache, cache_dir=args.cache_dir, progress=not args.quiet,
                   allow_same_source=args.allow_same_source)
    means = ", ".join(f"{lvl} AUROC {m['auroc']['value']:.3f}" for lvl, m in doc["mean"].items()
                      if m["auroc"]["value"] is not None)
    print(f"{doc['source']} -> {doc['target']} ({doc['variant']}, seed {doc['seed']}): {means} -> {args.out}"
          + (" (not zero-shot)" if doc["zero_shot"] is False else ""))
    tracker.report_failure("evaluate", args.out)
    return 0
