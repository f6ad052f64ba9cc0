"""``wmoe-clip evaluate``: zero-shot evaluation of one or more models on a target dataset.

Each ``--checkpoint`` / ``--config`` starts a model; ``--out``, ``--figure``, ``--train-run``, ``--source``
and ``--allow-same-source`` belong to the model whose ``--checkpoint``/``--config`` comes before them (the
first model's may also come before it). Models that share a backbone configuration are scored from one
pass of the target's images through the frozen encoder.
"""

from __future__ import annotations

import argparse

# The options of one model, and whether the option is a flag.
MODEL_OPTIONS = {"checkpoint": False, "config": False, "out": False, "figure": False, "train_run": False,
                 "source": False, "allow_same_source": True, "run": False}


class _ModelOption(argparse.Action):
    """Collects the options of each model into ``namespace.models`` (a list of dicts)."""

    def __call__(self, parser, namespace, values, option_string=None):
        models = list(getattr(namespace, "models", None) or [])
        last = models[-1] if models else None
        opens = self.dest in ("checkpoint", "config")
        if last is None or (opens and ("checkpoint" in last or "config" in last)):
            last = {}
            models.append(last)
        if self.dest in last:
            parser.error(f"{option_string} given twice for one model: each --checkpoint/--config starts a model, "
                         "and the options after it are that model's")
        last[self.dest] = True if MODEL_OPTIONS[self.dest] else values
        namespace.models = models


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate models on a target dataset (writes an eval JSON and a figure per model)",
        description="Run each model (a checkpoint, or with --config the run config of a method that does not "
        "train, such as clip) over the target's test split class by class, compute the metrics that "
        "apply to the dataset, and write its evaluation JSON (format wmoe-clip/eval, version 1) and a "
        "figure of sample anomaly maps. Give several models (each --checkpoint/--config followed by its "
        "own --out and options) to score them all from one pass of the images through the frozen encoder "
        "per backbone configuration; each JSON is exactly what evaluating that model alone writes.",
    )
    model = p.add_argument_group("each model (repeat the group for several models)")
    kw = {"action": _ModelOption, "default": argparse.SUPPRESS}
    model.add_argument("--checkpoint", **kw, help="model.pt written by wmoe-clip train or wmoe-clip import-checkpoint")
    model.add_argument("--config", **kw, help="run config (YAML file or shipped name) of a method that does not "
                       "train, e.g. one with method: clip")
    model.add_argument("--out", **kw, help="evaluation JSON to write")
    model.add_argument("--figure", **kw, help="figure PNG to write (default: the JSON's path with .png)")
    model.add_argument("--train-run", **kw, help="the training's run.json (default: run.json beside the "
                       "checkpoint); it must record this checkpoint's sha256")
    model.add_argument("--source", **kw, help="training dataset key, when no run.json records it")
    model.add_argument("--run", **kw, help="run name in the results layout (default: the method's name, or the "
                       "WMoE-CLIP variant), e.g. anomalyclip_released for an imported released checkpoint")
    model.add_argument("--allow-same-source", nargs=0, **kw,
                       help="evaluate a model on the dataset it was trained on; the JSON is marked not zero-shot")
    p.add_argument("--target", required=True,
                   help="registry key of the target dataset, e.g. mvtec, or the name of your own (prepare folder)")
    p.add_argument("--data", required=True, help="prepared folder of the target dataset (holds meta.json)")
    p.add_argument("--feature-cache", action="store_true",
                   help="read the frozen encoder's outputs from the feature cache (built if missing), e.g. the "
                   "one a training on this dataset built")
    p.add_argument("--cache-dir", help="feature cache root (default: $WMOE_CLIP_CACHE_DIR or ~/.cache/wmoe-clip/features)")
    p.add_argument("--verify-cache", action="store_true", help="with --feature-cache: check the checksum of every "
                   "cached array first (a damaged one is rebuilt)")
    p.add_argument("--force", action="store_true",
                   help="replace files at --out/--figure that are not earlier outputs of evaluate (never an input)")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, parser=p)


def requests(args: argparse.Namespace) -> list:
    """The models of the command line, each checked for a source of its model and an --out."""
    from pathlib import Path

    from ..engine.evaluate import ModelRequest

    models = getattr(args, "models", None) or []
    if not models:
        args.parser.error("give a model: --checkpoint FILE (or --config RUN_CONFIG) with its --out FILE.json")
    out = []
    for number, m in enumerate(models, 1):
        which = f"model {number}" if len(models) > 1 else "the model"
        if ("checkpoint" in m) == ("config" in m):
            args.parser.error(f"{which}: give one of --checkpoint and --config")
        if "out" not in m:
            args.parser.error(f"{which} ({m.get('checkpoint') or m.get('config')}): --out is required")
        paths = {k: Path(m[k]) if m.get(k) else None for k in ("out", "checkpoint", "figure", "train_run")}
        out.append(ModelRequest(**paths, config=m.get("config"), source=m.get("source"),
                                allow_same_source=m.get("allow_same_source", False), run=m.get("run"),
                                force=args.force))
    return out


def run(args: argparse.Namespace) -> int:
    from ..engine.evaluate import evaluate_models
    from ..engine.tracking import Tracker

    wanted = requests(args)
    trackers = [Tracker(enabled=not args.no_tracking) for _ in wanted]
    docs = evaluate_models(wanted, args.target, args.data, trackers=trackers, feature_cache=args.feature_cache,
                           cache_dir=args.cache_dir, progress=not args.quiet, verify_cache=args.verify_cache)
    for request, doc, tracker in zip(wanted, docs, trackers):
        means = ", ".join(f"{lvl} AUROC {m['auroc']['value']:.3f}" for lvl, m in doc["mean"].items()
                          if m["auroc"]["value"] is not None)
        print(f"{doc['source']} -> {doc['target']} ({doc['variant']}, seed {doc['seed']}): {means} -> {request.out}"
              + (" (not zero-shot)" if doc["zero_shot"] is False else ""))
        tracker.report_failure("evaluate", str(request.out))
    passes = {(d["encoder"]["job"], d["encoder"]["backbone"]): d["encoder"] for d in docs}
    if len(docs) > 1:
        print(f"{len(docs)} models from {len(passes)} encoder pass(es), "
              f"{sum(e['images'] for e in passes.values())} images through the frozen encoder")
    return 0
