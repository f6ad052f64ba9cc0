"""How far the bf16 (or fp16) frozen encoders move the maps from fp32, and how far each residual branch
moves CLIP at initialisation (``model.wmoe_clip.init: default`` vs ``zero_residual``).

    python benchmarks/precision.py                       # ViT-L-14-336, random weights, 8 images, CPU
    python benchmarks/precision.py --config tiny --images 16

Part 1 builds the ``full`` variant twice from the same seeds, once with ``model.precision: fp32`` and
once with the precision under test, and compares per image the per-pixel anomaly maps (raw and
smoothed with ``eval.sigma``, as evaluation sees them) by Spearman rank correlation and max |Δ|, and
across images the evaluation image scores. Part 2 measures, on the fp32 features of the same images,
the quantities of :mod:`wmoe_clip.model.wmoe_clip.diagnostics` at initialisation for both init schemes: cos(T, T̃),
cos(g, g′), ‖P(μ)‖ (evaluation), ‖P(z)‖ (training, z sampled) and the slot norm ‖V‖ for scale.
Backbone weights are random (``pretrained: null``); images are synthetic MVTec-AD stand-ins at batch 1.
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from wmoe_clip.config import PRECISIONS, load_config
from wmoe_clip.data.dataset import AnomalyDataset
from wmoe_clip.data.prepare import prepare
from wmoe_clip.data.synth import generate
from wmoe_clip.engine.smoothing import gaussian_smooth
from wmoe_clip.model import build_model
from wmoe_clip.model.wmoe_clip.diagnostics import diagnostics

SEED = 0


def _model(cfg, precision: str, init: str | None = None):
    torch.manual_seed(SEED)
    settings = dataclasses.replace(cfg.model.wmoe_clip, init=init or cfg.model.wmoe_clip.init)
    return build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, precision=precision,
                                                                           wmoe_clip=settings))).eval()


def _images(image_size: int, n: int) -> list[torch.Tensor]:
    with tempfile.TemporaryDirectory() as tmp:
        generate("mvtec", Path(tmp) / "raw", size=2, seed=0)
        prepare("mvtec", Path(tmp) / "raw", Path(tmp) / "prep", progress=False)
        dataset = AnomalyDataset(Path(tmp) / "prep", "test", image_size)
        picks = np.linspace(0, len(dataset) - 1, n).round().astype(int)
        return [dataset[int(i)]["image"].unsqueeze(0) for i in picks]


@torch.no_grad()
def _evaluate(model, feats, sigma: float) -> tuple[np.ndarray, np.ndarray, float]:
    out = model.forward_features(feats)
    smoothed = gaussian_smooth(out.anomaly_map.float(), sigma)
    score = model.eval_image_score(out.global_score, smoothed)
    return out.anomaly_map[0].numpy(), smoothed[0].numpy(), float(score[0])


def precision_part(cfg, images, precision: str):
    """Part 1; returns the fp32 features and the fp32 model (``zero_residual``) for part 2."""
    reference, reduced = _model(cfg, precision="fp32"), _model(cfg, precision=precision)
    sigma = cfg.eval.sigma
    rows, scores, feats32, times = [], [], [], {"fp32": [], precision: []}
    for image in images:
        t0 = time.perf_counter()
        f32 = reference.encode_image(image)
        t1 = time.perf_counter()
        f16 = reduced.encode_image(image)
        t2 = time.perf_counter()
        times["fp32"].append(t1 - t0)
        times[precision].append(t2 - t1)
        feats32.append(f32)
        raw32, sm32, s32 = _evaluate(reference, f32, sigma)
        raw16, sm16, s16 = _evaluate(reduced, f16, sigma)
        cos_patch = torch.nn.functional.cosine_similarity(f32.patch_tokens, f16.patch_tokens.float(), dim=-1)
        rows.append({
            "map_spearman": spearmanr(raw32.ravel(), raw16.ravel()).statistic,
            "map_max_abs": float(np.abs(raw32 - raw16).max()),
            "smoothed_spearman": spearmanr(sm32.ravel(), sm16.ravel()).statistic,
            "smoothed_max_abs": float(np.abs(sm32 - sm16).max()),
            "patch_cos_min": float(cos_patch.min()),
        })
        scores.append((s32, s16))
    s32, s16 = np.array(scores).T
    print(f"### {precision} vs fp32 encoders: {cfg.model.backbone} at {cfg.model.image_size} px, random weights, "
          f"{len(images)} images, batch 1, CPU ({torch.get_num_threads()} threads)\n")
    print("| quantity | worst over images | median |")
    print("|---|---|---|")
    for key, label, worst in (("map_spearman", "Spearman, per-pixel map (raw)", min),
                              ("map_max_abs", "max \\|Δ\\|, per-pixel map (raw)", max),
                              ("smoothed_spearman", f"Spearman, per-pixel map (smoothed σ={sigma:g})", min),
                              ("smoothed_max_abs", f"max \\|Δ\\|, per-pixel map (smoothed σ={sigma:g})", max),
                              ("patch_cos_min", "min cos(patch token fp32, patch token reduced)", min)):
        values = [r[key] for r in rows]
        print(f"| {label} | {worst(values):.6f} | {statistics.median(values):.6f} |")
    print(f"| Spearman, image scores across the {len(images)} images | {spearmanr(s32, s16).statistic:.6f} | |")
    print(f"| max \\|Δ\\|, image score | {np.abs(s32 - s16).max():.6f} | |")
    print(f"\nimage encoder per image: fp32 {statistics.median(times['fp32']):.1f} s, "
          f"{precision} {statistics.median(times[precision]):.1f} s (median)\n")
    del reduced
    return feats32, reference


def init_part(cfg, feats, zero_model) -> None:
    """Part 2 on the fp32 features."""
    models = {"default": _model(cfg, precision="fp32", init="default"), "zero_residual": zero_model}
    print(f"### Distance from CLIP at initialisation ({cfg.model.backbone} widths, full variant, "
          f"{len(feats)} images)\n")
    print("| init | cos(T, T̃) | cos(g, g′) | ‖P(μ)‖ (eval) | ‖P(z)‖ (training) | slot ‖V‖ |")
    print("|---|---|---|---|---|---|")
    for name, model in models.items():
        values: dict[str, list[float]] = {}
        for i, f in enumerate(feats):
            with torch.no_grad():
                evaluated = diagnostics(model.eval().forward_features(f).aux)
                torch.manual_seed(i)
                trained = diagnostics(model.train().forward_features(f).aux)
            for key, value in (("cos_text", evaluated["cos_text"]), ("cos_global", evaluated["cos_global"]),
                               ("p_mu", evaluated["prompt_shift_norm"]), ("p_z", trained["prompt_shift_norm_sampled"])):
                values.setdefault(key, []).append(value)
        slot = float(model.prompts.context.detach().norm(dim=-1).mean())
        mean = {k: statistics.mean(v) for k, v in values.items()}
        print(f"| {name} | {mean['cos_text']:.3f} | {mean['cos_global']:.3f} | {mean['p_mu']:.3f} | "
              f"{mean['p_z']:.2f} | {slot:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="vit_l14_336")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--precision", choices=[p for p in PRECISIONS if p != "fp32"], default="bf16")
    args = ap.parse_args()
    cfg = load_config(args.config, "full")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=None))
    images = _images(cfg.model.image_size, args.images)
    feats, zero_model = precision_part(cfg, images, args.precision)
    init_part(cfg, feats, zero_model)


if __name__ == "__main__":
    main()
