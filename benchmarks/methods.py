"""The methods side by side on one backbone: learnable parameters and the cost of a step, as ratios to WMoE-CLIP.

    python benchmarks/methods.py --config tiny
    python benchmarks/methods.py --config vit_l14_336 --batch 2 --repeats 2 --precision fp32   # CPU
    python benchmarks/methods.py --config vit_l14_336 --batch 8 --device cuda

Every method is built on the same backbone configuration (the config's, with ``method`` switched), so
the frozen encoder is one shared cost, timed once. Per method: a training step on encoder features
(forward of the method, its loss, backward, Adam; what an epoch on the feature cache costs), and an
evaluation forward on the same features. Weights are random (timings do not depend on them).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from wmoe_clip.config import load_config
from wmoe_clip.engine import runtime
from wmoe_clip.model import build_model
from wmoe_clip.model.backbone import FrozenCLIP
from wmoe_clip.model.registry import METHODS

# benchmarks/ is run as a script folder
from train_step import add_timing_args, default_batch, random_targets, random_weights, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_timing_args(ap, cuda_batch=8)
    args = ap.parse_args()

    device = runtime.select_device(args.device)
    base = random_weights(load_config(args.config, "full"), args.precision)
    batch = default_batch(args, device, cuda_batch=8)
    s = base.model.image_size
    torch.manual_seed(0)
    backbone = FrozenCLIP(base.model).to(device)
    images = torch.randn(batch, 3, s, s, device=device)
    labels, masks = random_targets(batch, s, device)
    classes = ["bottle"] * batch

    with torch.no_grad():
        t_encoder = timed(lambda: backbone.encode_image(images), args.repeats, args.warmup, device)

    # AnomalyCLIP's deep tokens enter before text blocks 1..8: a smaller text tower (the tiny one) takes fewer.
    anomalyclip = base.for_method("anomalyclip").model.anomalyclip
    depth = min(anomalyclip.deep_prompt_depth, backbone.clip.transformer.layers)
    anomalyclip = dataclasses.replace(anomalyclip, deep_prompt_depth=depth)
    rows = []
    for name, spec in METHODS.items():
        torch.manual_seed(0)
        cfg = base.for_method(name) if name != base.method else base
        if name == "anomalyclip":
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, anomalyclip=anomalyclip))
        model = build_model(cfg, backbone=backbone).to(device)
        with torch.no_grad():
            feats = model.encode_image(images)
        params = sum(p.numel() for p in model.learnable_parameters())
        t_train = float("nan")
        if spec.trains:
            opt = torch.optim.Adam(model.learnable_parameters(), lr=1e-3, betas=(0.5, 0.999))
            model.train()

            def step():
                total = model.loss(model.forward_features(feats, classes), labels, masks)["total"]
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()

            t_train = timed(step, args.repeats, args.warmup, device)
        model.eval()
        with torch.no_grad():
            t_eval = timed(lambda: model.forward_features(feats, classes), args.repeats, args.warmup, device)
        rows.append((spec.display_name, params, t_train, t_eval))

    print(f"{base.model.backbone} at {s} px, batch {batch}, {runtime.device_description(device)}, encoders "
          f"{base.model.precision}, median of {args.repeats}; frozen image encoder {t_encoder:.3f} s per batch")
    print("| method | learnable parameters | train step on features (s) | ratio | eval forward on features (s) "
          "| ratio | eval with encoder, ratio |")
    print("|---|---|---|---|---|---|---|")
    ref_train, ref_eval = rows[0][2], rows[0][3]
    for display, params, t_train, t_eval in rows:
        train = "– | –" if t_train != t_train else f"{t_train:.4f} | {t_train / ref_train:.2f}"
        print(f"| {display} | {params:,} | {train} | {t_eval:.4f} | "
              f"{t_eval / ref_eval:.2f} | {(t_encoder + t_eval) / (t_encoder + ref_eval):.2f} |")


if __name__ == "__main__":
    main()
