"""Cached vs uncached training epochs, evaluation throughput, and the paper protocol's wall time.

Runs the real ``train`` and ``evaluate`` on a synthetic stand-in (VisA by default) (the loader path included):
one training without the feature cache, one with it (the cache build timed apart), one evaluation.
On CUDA it also records peak memory. With the full config the backbone has random weights
(``pretrained: null``): the cost is the same, nothing is downloaded.

    python benchmarks/feature_cache.py --config tiny --per-class 8 --epochs 3
    python benchmarks/feature_cache.py --config vit_l14_336 --per-class 1 --epochs 1 --batch-size 4

The estimate of the whole protocol (10 trainings, 22 evaluations, docs/METHOD.md §5) scales the measured
images/s to the registry's test-split sizes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from wmoe_clip.config import PRECISIONS, load_config
from wmoe_clip.data import registry
from wmoe_clip.data.dataset import AnomalyDataset
from wmoe_clip.data.prepare import prepare
from wmoe_clip.data.synth import generate
from wmoe_clip.engine import runtime
from wmoe_clip.engine.evaluate import evaluate
from wmoe_clip.engine.feature_cache import open_cache
from wmoe_clip.engine.train import apply_overrides, train
from wmoe_clip.model import build_model

from train_step import random_weights  # noqa: E402  (benchmarks/ is run as a script folder)

VARIANTS = ("base", "ctds", "ctds_wcma", "ctds_samoe", "full")
TABLE1_TARGETS = [k for k in registry.keys() if k != "visa"]


def _n(key: str) -> int:
    return sum(registry.get(key).totals)


def protocol_estimate(train_ips: float, eval_ips: float, epochs: int, cache_ips: float | None) -> dict[str, float]:
    """Seconds for 10 trainings (5 variants × {VisA, MVTec}) and 22 evaluations (13 + 1 + 2·4 more)."""
    trainings = sum(epochs * _n(src) / train_ips for src in ("visa", "mvtec") for _ in VARIANTS)
    if cache_ips:  # the cache is built once per source dataset
        trainings += sum(_n(src) / cache_ips for src in ("visa", "mvtec"))
    evals = [("visa", t) for t in TABLE1_TARGETS] + [("mvtec", "visa")]
    evals += [(s, t) for v in VARIANTS if v != "full" for s, t in (("visa", "mvtec"), ("mvtec", "visa"))]
    assert len(evals) == 22
    evaluations = sum(_n(t) / eval_ips for _, t in evals)
    return {"train_s": trainings, "eval_s": evaluations, "total_s": trainings + evaluations}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--dataset", default="visa", help="synthetic stand-in to train and evaluate on")
    ap.add_argument("--per-class", type=int, default=8, help="synthetic test images per class")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, help="override train.batch_size and eval.batch_size")
    ap.add_argument("--paper-epochs", type=int, default=20)
    ap.add_argument("--precision", choices=PRECISIONS, help="frozen encoders; default: the config's model.precision")
    args = ap.parse_args()

    cfg = random_weights(apply_overrides(load_config(args.config), "full", seed=0, epochs=args.epochs), args.precision)
    if args.batch_size:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=args.batch_size),
                                  eval=dataclasses.replace(cfg.eval, batch_size=args.batch_size))
    device = runtime.select_device(cfg.train.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(args.dataset, tmp / "raw", size=args.per_class, seed=0)
        prepare(args.dataset, tmp / "raw", tmp / "prep", progress=False)
        run = train(cfg, args.dataset, tmp / "prep", tmp / "plain", progress=False)
        cached_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, feature_cache=True))
        t0 = time.perf_counter()
        open_cache(cached_cfg, AnomalyDataset(tmp / "prep", "test", cfg.model.image_size), build_model(cfg).to(device),
                   device, tmp / "cache", cfg.train.batch_size, cfg.train.num_workers)
        build_s = time.perf_counter() - t0
        train(cached_cfg, args.dataset, tmp / "prep", tmp / "cached", cache_dir=tmp / "cache", progress=False)
        # Timed on the training dataset's own test split: a cost figure, not a zero-shot result.
        doc = evaluate(tmp / "plain" / "model.pt", args.dataset, tmp / "prep", tmp / "eval.json", progress=False,
                       allow_same_source=True)
        plain = json.loads((tmp / "plain" / "history.json").read_text())
        cached = json.loads((tmp / "cached" / "history.json").read_text())

    n = run["counts"]["n_images"]
    # The first epoch carries one-off warm-up; the later ones are the steady state.
    steady = slice(1, None) if args.epochs > 1 else slice(None)
    plain_ips = statistics.median(h["images_per_s"] for h in plain[steady])
    cached_ips = statistics.median(h["images_per_s"] for h in cached[steady])
    eval_ips = doc["timings"]["images_per_s"]
    peak = max((h["peak_memory_mb"] or 0) for h in plain + cached) or None
    print(f"config {args.config} ({cfg.model.backbone} at {cfg.model.image_size} px), "
          f"{runtime.device_description(device)}, encoders {cfg.model.precision}, {n} images, "
          f"batch {cfg.train.batch_size}, {args.epochs} epoch(s)")
    print("| epoch | uncached s | cached s |")
    print("|---|---|---|")
    for a, b in zip(plain, cached):
        print(f"| {a['epoch']} | {a['time_s']:.2f} | {b['time_s']:.2f} |")
    print(f"train images/s: uncached {plain_ips:.2f}, cached {cached_ips:.2f} (x{cached_ips / plain_ips:.1f}); "
          f"cache build {build_s:.2f} s ({n / build_s:.2f} img/s); peak train memory {peak} MiB")
    print(f"eval images/s {eval_ips:.2f}, metrics {doc['timings']['metrics_s']:.2f} s, "
          f"peak eval memory {doc['timings']['peak_memory_mb']} MiB")
    for name, ips, cache in (("uncached", plain_ips, None), ("cached", cached_ips, n / build_s)):
        est = protocol_estimate(ips, eval_ips, args.paper_epochs, cache)
        print(f"protocol estimate ({name} training, {args.paper_epochs} epochs): trainings {est['train_s'] / 3600:.2f} h, "
              f"evaluations {est['eval_s'] / 3600:.2f} h, total {est['total_s'] / 3600:.2f} h")


if __name__ == "__main__":
    main()
