"""The throughput figures of one accelerator, and the whole paper protocol estimated from them.

    bash benchmarks/gpu.sh                                   # ViT-L-14-336 at 518, CUDA, about 5 minutes
    python benchmarks/gpu.py --config tiny --device cpu --quick   # the same code on CPU in seconds

With random weights (timings do not depend on them), at the config's ``model.precision`` (bf16 for
``vit_l14_336``), it measures:

1. the frozen image encoder, images/s at each batch size (32, and the one that maximises it);
2. a training epoch on cached features (what every epoch after the cache is built costs), images/s,
   for the variants ``full`` and ``base``;
3. evaluation of 5 checkpoints (the five Table 2 variants) sharing one encoder pass, images/s of target
   images (all 5 scored, smoothing and image scores included), against 5 separate passes;
4. peak accelerator memory;
5. the data loader with all cores (decode, resize, collate: 1024² JPEG → the input size), images/s;
6. the paper protocol (``config/config.yaml``: 10 trainings, 22 evaluations, registry image counts) from
   these rates: one encoder pass per distinct image (the trainings' caches, shared by all variants and
   seeds, and one shared evaluation pass per target), every training epoch on cached features, and every
   checkpoint's scoring of every image of its targets; loading overlaps the encoder, so the slower of the
   two sets the encoder stage's time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from pathlib import Path

import torch
import yaml

from wmoe_clip.config import PRECISIONS, load_config
from wmoe_clip.data import registry as data_registry
from wmoe_clip.data.dataset import AnomalyDataset
from wmoe_clip.engine import runtime
from wmoe_clip.engine.smoothing import gaussian_smooth
from wmoe_clip.model import build_model
from wmoe_clip.model.backbone import FrozenCLIP
from wmoe_clip.model.base import ImageFeatures
from wmoe_clip.model.wmoe_clip.settings import VARIANTS

from loader import make_dataset, one_pass  # noqa: E402  (benchmarks/ is run as a script folder)
from train_step import random_targets, random_weights, timed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def images(batch: int, size: int, device: torch.device) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, device=device)


def encoder_rates(backbone, size, batches, repeats, device) -> dict[int, float]:
    rates = {}
    for b in batches:
        x = images(b, size, device)
        try:
            with torch.no_grad():
                rates[b] = b / timed(lambda: backbone.encode_image(x), repeats, 1, device)
        except torch.OutOfMemoryError:
            break
        finally:
            del x
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rates


def cached_features(backbone, batch, size, device):
    """One batch of encoder outputs as the feature cache returns them (stored fp16, read as float32)."""
    with torch.no_grad():
        feats = backbone.encode_image(images(batch, size, device))
    return ImageFeatures(*(t.half().float() for t in feats))


def train_rate(cfg, variant, backbone, batch, repeats, device) -> float:
    torch.manual_seed(0)
    model = build_model(cfg.with_variant(variant), backbone=backbone).to(device).train()
    opt = torch.optim.Adam(model.learnable_parameters(), lr=1e-3, betas=(0.5, 0.999))
    size = cfg.model.image_size
    feats = cached_features(backbone, batch, size, device)
    labels, masks = random_targets(batch, size, device)

    def step():
        total = model.loss(model.forward_features(feats), labels, masks)["total"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    return batch / timed(step, repeats, 1, device)


def eval_rates(cfg, backbone, batch, repeats, device) -> tuple[float, float, float]:
    """(shared images/s, separate images/s, model-only images/s per checkpoint) for the 5 variants."""
    torch.manual_seed(0)
    models = [build_model(cfg.with_variant(v), backbone=backbone).to(device).eval() for v in VARIANTS]
    x = images(batch, cfg.model.image_size, device)

    def score(model, feats):
        out = model.forward_features(feats)
        smoothed = gaussian_smooth(out.anomaly_map.float(), cfg.eval.sigma)
        model.eval_image_score(out.global_score, smoothed).cpu()

    def encode():
        return ImageFeatures(*backbone.encode_image(x))

    def shared_pass():
        feats = encode()
        for m in models:
            score(m, feats)

    def separate_passes():
        for m in models:
            score(m, encode())

    with torch.no_grad():
        feats = encode()
        shared = timed(shared_pass, repeats, 1, device)
        separate = timed(separate_passes, repeats, 1, device)
        heads = timed(lambda: [score(m, feats) for m in models], repeats, 1, device)
    return batch / shared, batch / separate, len(models) * batch / heads


def loader_rate(size: int, n: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):  # no generation bars
        prepared = make_dataset(Path(tmp), n)
        dataset = AnomalyDataset(prepared, "test", size)
        jpeg = [i for i, r in enumerate(dataset.records) if r["img_path"].endswith(".jpg")]
        dataset.records = [dataset.records[i] for i in jpeg]
        return one_pass(dataset, workers, 32, "meta")[0]


def protocol(workflow_config: Path, epochs: int) -> dict[str, int]:
    """Image counts of the protocol from the workflow config and the registry."""
    wf = yaml.safe_load(workflow_config.read_text())
    n = {key: sum(data_registry.get(key).totals) for key in
         {*wf["sources"], *(t for ts in wf["targets"].values() for t in ts),
          *(t for ts in (wf.get("ablation_targets") or {}).values() for t in ts)}}
    seeds = len(wf.get("seeds") or [0])
    variants = list(wf.get("variants") or VARIANTS)
    ablation = wf.get("ablation_targets") or {}
    trainings = [(s, v) for s in wf["sources"] for v in variants if v == "full" or s in ablation]
    evals = [(s, t) for s in wf["sources"] for t in wf["targets"][s]]
    evals += [(s, t) for s, ts in ablation.items() for t in ts for _v in variants if _v != "full"]
    return {
        "distinct_images": sum(n.values()),
        "trainings": len(trainings) * seeds,
        "training_images": epochs * seeds * sum(n[s] for s, _ in trainings),
        "evaluations": len(evals) * seeds,
        "scored_images": seeds * sum(n[t] for _, t in evals),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="vit_l14_336")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workflow-config", default=str(ROOT / "config" / "config.yaml"))
    ap.add_argument("--quick", action="store_true", help="few batches and repeats (the CPU test)")
    ap.add_argument("--precision", choices=PRECISIONS, help="encoder precision (default: the config's)")
    args = ap.parse_args()

    device = runtime.select_device(args.device)
    cfg = random_weights(load_config(args.config, "full"), args.precision)
    size = cfg.model.image_size
    repeats = 1 if args.quick else 5
    batches = [2, 4] if args.quick else [8, 16, 32, 64, 128, 256]
    batch = 4 if args.quick else 32
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    backbone = FrozenCLIP(cfg.model).to(device)

    print(f"{cfg.model.backbone} at {size} px, encoders {cfg.model.precision}, "
          f"{runtime.device_description(device)}, random weights")
    enc = encoder_rates(backbone, size, batches, repeats, device)
    best = max(enc, key=enc.get)
    print("frozen encoder images/s by batch: " + ", ".join(f"{b}: {r:.3g}" for b, r in enc.items())
          + f"  (best: batch {best})")
    train_full = train_rate(cfg, "full", backbone, batch, repeats, device)
    train_base = train_rate(cfg, "base", backbone, batch, repeats, device)
    print(f"training on cached features, images/s (batch {batch}): full {train_full:.3g}, base {train_base:.3g}")
    shared, separate, heads = eval_rates(cfg, backbone, batch, repeats, device)
    print(f"evaluation of 5 checkpoints, target images/s (batch {batch}): one shared encoder pass {shared:.3g}, "
          f"5 separate passes {separate:.3g} (x{shared / separate:.2f}); scoring alone {heads:.3g} "
          "checkpoint-images/s")
    if device.type == "cuda":
        print(f"peak accelerator memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    workers = os.cpu_count() or 1
    load = loader_rate(size, 8 if args.quick else 96, workers)
    print(f"loader, 1024² JPEG -> {size} px, {workers} workers: {load:.3g} images/s")

    epochs = load_config(args.config).train.epochs
    p = protocol(Path(args.workflow_config), epochs)
    t_encode = p["distinct_images"] / min(enc[best], load)
    t_train = p["training_images"] / min(train_full, train_base)
    t_score = p["scored_images"] / heads
    total = t_encode + t_train + t_score
    print(f"protocol ({Path(args.workflow_config).name}: {p['trainings']} trainings of {epochs} epochs, "
          f"{p['evaluations']} evaluations, {p['distinct_images']} distinct images): encoder pass "
          f"{t_encode / 60:.1f} min + training on cached features {t_train / 60:.1f} min + scoring "
          f"{t_score / 60:.1f} min = {total / 60:.1f} min (+ job start-up and model loading)")


if __name__ == "__main__":
    main()
