"""Time a WMoE-CLIP training step (forward, backward, Adam) and the text encoder's share of it.

    python benchmarks/train_step.py --config tiny
    python benchmarks/train_step.py --config vit_l14_336 --batch 2 --repeats 3 --precision fp32   # CPU
    python benchmarks/train_step.py --config vit_l14_336 --batch 32 --device cuda      # bf16 encoders

Each measurement runs with and without text truncation on the same model. Weights are random
(``pretrained`` is forced to null): timings do not depend on them. The frozen encoders run at the
config's ``model.precision`` unless ``--precision`` says otherwise. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from wmoe_clip.config import PRECISIONS, load_config
from wmoe_clip.engine import runtime
from wmoe_clip.model import build_model


def timed(fn, repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in seconds."""
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--variant", default="full")
    ap.add_argument("--batch", type=int, default=None, help="default: 8 (tiny), 2 on CPU / 32 on CUDA (others)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", choices=PRECISIONS, default=None, help="default: the config's model.precision")
    args = ap.parse_args()

    device = runtime.select_device(args.device)
    cfg = load_config(args.config, args.variant)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=None,
                                                             precision=args.precision or cfg.model.precision))
    batch = args.batch or (8 if args.config == "tiny" else (32 if device.type == "cuda" else 2))
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    opt = torch.optim.Adam(model.learnable_parameters(), lr=1e-3, betas=(0.5, 0.999))
    s = cfg.model.image_size
    images = torch.randn(batch, 3, s, s, device=device)
    labels = (torch.arange(batch, device=device) % 2).float()
    masks = torch.zeros(batch, s, s, device=device)
    masks[1::2, s // 4: s // 2, s // 4: s // 2] = 1

    def step():
        out = model(images)
        total = model.loss(out, labels, masks)["total"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    with torch.no_grad():
        g = torch.nn.functional.normalize(model.encode_image(images).global_token.float(), dim=-1)

    def text_part():
        shift = model.ctds(g)["prompt_shift"] if model.ctds is not None else None
        text = model.encode_prompts(shift)
        opt.zero_grad(set_to_none=True)
        text.float().sum().backward()

    rows = []
    for truncate in (True, False):
        model.cfg = dataclasses.replace(model.cfg, model=dataclasses.replace(model.cfg.model, truncate_text=truncate))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t_step = timed(step, args.repeats, args.warmup, device)
        t_text = timed(text_part, args.repeats, args.warmup, device)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        rows.append((truncate, t_step, t_text, batch / t_step, peak))

    print(f"{cfg.model.backbone} at {s} px, variant {cfg.variant}, batch {batch}, {runtime.device_description(device)}, "
          f"encoders {cfg.model.precision}, median of {args.repeats}")
    print("| text truncation | step (s) | text encoder fwd+bwd (s) | images/s | peak GPU GiB |")
    print("|---|---|---|---|---|")
    for truncate, t_step, t_text, ips, peak in rows:
        print(f"| {'on' if truncate else 'off'} | {t_step:.3f} | {t_text:.3f} | {ips:.1f} | {peak:.1f} |")
    print(f"text encoder speed-up from truncation: {rows[1][2] / rows[0][2]:.1f}x")


if __name__ == "__main__":
    main()
