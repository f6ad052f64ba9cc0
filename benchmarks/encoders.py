"""The frozen encoder pass of each method's shipped config, per image: what one evaluation of a target costs
before any scoring, and what WinCLIP's windows add to a plain pass of its backbone.

    python benchmarks/encoders.py --device cuda                       # ViT-L-14-336 at 518 vs WinCLIP at 240
    python benchmarks/encoders.py --configs tiny tiny_winclip --device cpu --batch 4 --repeats 1   # the CPU test

Random weights (timings do not depend on them). For each config: images/s of the method's
``encode_image`` (what an evaluate job runs per batch; WinCLIP's includes every window embedding), the
backbone's plain pass alone, and how many transformer sequences one image costs.
"""

from __future__ import annotations

import argparse

import torch

from wmoe_clip.config import PRECISIONS, load_config
from wmoe_clip.engine import runtime
from wmoe_clip.model import build_model

from train_step import random_weights, timed  # noqa: E402  (benchmarks/ is run as a script folder)


def sequences_per_image(model) -> int:
    """Transformer sequences per image: the whole image, plus one per window where the method has windows."""
    return 1 + sum(len(w) for w in getattr(model, "windows", []))


def measure(name: str, batch: int, repeats: int, device: torch.device, precision: str | None) -> dict:
    cfg = random_weights(load_config(name), precision)
    model = build_model(cfg).to(device).eval()
    size = cfg.model.image_size
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        method = timed(lambda: model.encode_image(x), repeats, 1, device)
        plain = timed(lambda: model.backbone.encode_image(x), repeats, 1, device)
    return {"config": name, "method": cfg.method, "backbone": cfg.model.backbone, "size": size,
            "precision": cfg.model.precision, "sequences": sequences_per_image(model),
            "method_rate": batch / method, "plain_rate": batch / plain}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["vit_l14_336", "winclip"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", choices=PRECISIONS, default=None, help="default: each config's model.precision")
    args = ap.parse_args()
    device = runtime.select_device(args.device)
    print(f"encoder pass per image, batch {args.batch}, {runtime.device_description(device)}, random weights")
    print("| config | method | backbone | px | precision | sequences/image | method encode_image images/s "
          "| ms/image | plain backbone images/s | method/plain cost |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.configs:
        r = measure(name, args.batch, args.repeats, device, args.precision)
        print(f"| {r['config']} | {r['method']} | {r['backbone']} | {r['size']} | {r['precision']} | {r['sequences']} "
              f"| {r['method_rate']:.3g} | {1000 / r['method_rate']:.3g} | {r['plain_rate']:.3g} "
              f"| ×{r['plain_rate'] / r['method_rate']:.3g} |")


if __name__ == "__main__":
    main()
