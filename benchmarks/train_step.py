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


def random_weights(cfg, precision: str | None = None):
    """``cfg`` with random weights (timings do not depend on them) and its frozen encoders at ``precision``
    (default: the config's ``model.precision``)."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=None,
                                                              precision=precision or cfg.model.precision))


def add_timing_args(ap: argparse.ArgumentParser, cuda_batch: int) -> None:
    """The options every step-timing benchmark takes; ``--batch`` defaults to :func:`default_batch`."""
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--batch", type=int, default=None,
                    help=f"default: 8 (tiny configs), 2 on CPU / {cuda_batch} on CUDA (others)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", choices=PRECISIONS, default=None, help="default: the config's model.precision")


def default_batch(args: argparse.Namespace, device: torch.device, cuda_batch: int) -> int:
    return args.batch or (8 if args.config.startswith("tiny") else (cuda_batch if device.type == "cuda" else 2))


def random_targets(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels alternating normal/anomalous, and a square defect in the mask of every anomalous image."""
    labels = torch.arange(batch, device=device) % 2
    masks = torch.zeros(batch, size, size, device=device)
    masks[1::2, size // 4: size // 2, size // 4: size // 2] = 1
    return labels, masks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_timing_args(ap, cuda_batch=32)
    ap.add_argument("--variant", default="full")
    args = ap.parse_args()

    device = runtime.select_device(args.device)
    cfg = random_weights(load_config(args.config, args.variant), args.precision)
    batch = default_batch(args, device, cuda_batch=32)
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    opt = torch.optim.Adam(model.learnable_parameters(), lr=1e-3, betas=(0.5, 0.999))
    s = cfg.model.image_size
    images = torch.randn(batch, 3, s, s, device=device)
    labels, masks = random_targets(batch, s, device)

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
