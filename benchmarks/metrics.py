"""Benchmark of wmoe_clip.metrics on synthetic MVTec-sized data; prints figures for metrics.md.

Three measurements in one process:
1. The evaluation protocol: the 15 MVTec AD test classes (1725 images of 518², blob defects), each class
   generated, streamed through `ClassMetricAccumulator` in batches of 32, finalised (image metrics, pixel
   AUROC / AP / F1-max, both AUPRO variants) and freed before the next class. Reports the metric time and
   the peak RSS of the process (everything included: data, imports, buffers).
2. Pixel AUROC + AP + F1-max at about 50 M pixels: ours against sklearn (roc_auc_score,
   average_precision_score, precision_recall_curve + F1 as AdaCLIP computes it), with the differences.
3. AnomalyCLIP AUPRO on one class: ours against the faithful 200-threshold loop (tests/metrics).

Run from the repository root:  .venv/bin/python benchmarks/metrics.py
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from tqdm import tqdm

from wmoe_clip.metrics import ClassMetricAccumulator, aupro, rank_metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "metrics"))
from metrics_reference import anomalyclip_loop  # noqa: E402  (the tests' faithful reference)

# MVTec AD test split: (class, images, normal images); 1725 images, 467 normal.
MVTEC_TEST = [
    ("bottle", 83, 20), ("cable", 150, 58), ("capsule", 132, 23), ("carpet", 117, 28), ("grid", 78, 21),
    ("hazelnut", 110, 40), ("leather", 124, 32), ("metal_nut", 115, 22), ("pill", 167, 26),
    ("screw", 160, 41), ("tile", 117, 33), ("toothbrush", 42, 12), ("transistor", 100, 60),
    ("wood", 79, 19), ("zipper", 151, 32),
]
SIZE = 518
PATCH_GRID = 37  # ViT-L/14 at 518²: maps are upsampled from a 37x37 patch grid
BATCH = 32


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def synth_class(rng: np.random.Generator, n: int, n_normal: int) -> tuple[np.ndarray, np.ndarray]:
    """Bool masks and float32 maps (n, 518, 518): smooth upsampled noise plus a bump over each blob."""
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    maps = np.empty((n, SIZE, SIZE), dtype=np.float32)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    for start in range(0, n, BATCH):
        stop = min(start + BATCH, n)
        noise = torch.randn(stop - start, 1, PATCH_GRID, PATCH_GRID, generator=gen)
        maps[start:stop] = F.interpolate(noise, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    yy, xx = np.ogrid[:SIZE, :SIZE]
    for i in range(n_normal, n):
        for _ in range(int(rng.integers(1, 5))):
            cy, cx = rng.integers(0, SIZE, size=2)
            ry, rx = rng.uniform(3, 60, size=2)
            y0, y1 = max(0, int(cy - 2 * ry)), min(SIZE, int(cy + 2 * ry) + 1)
            x0, x1 = max(0, int(cx - 2 * rx)), min(SIZE, int(cx + 2 * rx) + 1)
            d2 = ((yy[y0:y1] - cy) / ry) ** 2 + ((xx[:, x0:x1] - cx) / rx) ** 2
            masks[i, y0:y1, x0:x1] |= d2 <= 1
            maps[i, y0:y1, x0:x1] += (rng.uniform(0.3, 1.5) * np.exp(-d2)).astype(np.float32)
    return masks, maps


def protocol(rng: np.random.Generator) -> None:
    acc = ClassMetricAccumulator(image=True, pixel=True, image_size=(SIZE, SIZE),
                                 expected={cls: n for cls, n, _ in MVTEC_TEST})
    metric_s = 0.0
    n_pixels = 0
    for cls, n, n_normal in tqdm(MVTEC_TEST, desc="classes", file=sys.stderr):
        masks, maps = synth_class(rng, n, n_normal)
        labels = masks.any(axis=(1, 2))
        scores = maps.reshape(n, -1).max(axis=1)
        for start in range(0, n, BATCH):
            rows = slice(start, start + BATCH)
            acc.add(cls, labels[rows], scores[rows], masks=masks[rows], maps=maps[rows])
        del masks, maps
        t0 = time.perf_counter()
        acc.finalize_class(cls)
        metric_s += time.perf_counter() - t0
        n_pixels += n * SIZE * SIZE
    mean = acc.mean()
    print(f"## 1. Protocol: {len(MVTEC_TEST)} classes, {sum(n for _, n, _ in MVTEC_TEST)} images of {SIZE}², "
          f"{n_pixels / 1e6:.1f} M px, per class")
    print(f"- metrics of all classes (image + pixel AUROC/AP/F1-max + both AUPRO variants): {metric_s:.2f} s")
    print(f"- peak RSS of the process so far: {peak_rss_gb():.2f} GB")
    print("- means: " + ", ".join(f"pixel {m} {v['value']:.4f}" for m, v in mean["pixel"].items()))


def against_sklearn(rng: np.random.Generator, n_pixels: float) -> None:
    n_images = round(n_pixels / SIZE**2)
    masks, maps = synth_class(rng, n_images, n_images // 4)
    labels, scores = masks.ravel(), maps.ravel()
    t0 = time.perf_counter()
    ours = rank_metrics(labels, scores)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    del precision, recall
    ref = {"auroc": roc_auc_score(labels, scores), "ap": average_precision_score(labels, scores),
           "f1_max": float(np.max(f1[np.isfinite(f1)]))}
    ref_s = time.perf_counter() - t0
    diff = max(abs(ours[m] - ref[m]) for m in ref)
    print(f"## 2. Pixel AUROC + AP + F1-max on {labels.size / 1e6:.1f} M px ({n_images} images of {SIZE}², "
          f"{labels.mean() * 100:.2f} % anomalous, float32 scores, bool labels)")
    print(f"- ours {ours_s:.2f} s; sklearn (3 calls) {ref_s:.2f} s; ratio {ref_s / ours_s:.1f}x; max |diff| {diff:.1e}")
    print(f"- peak RSS of the process so far: {peak_rss_gb():.2f} GB")


def against_loop(rng: np.random.Generator, cls: str) -> None:
    (n, n_normal), = [(n, k) for name, n, k in MVTEC_TEST if name == cls]
    masks, maps = synth_class(rng, n, n_normal)
    t0 = time.perf_counter()
    ours = aupro(masks, maps, variant="anomalyclip")
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = aupro(masks, maps)
    exact_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = anomalyclip_loop(masks, maps)
    ref_s = time.perf_counter() - t0
    print(f"## 3. AnomalyCLIP AUPRO on one class ({cls}: {n} images of {SIZE}², {masks.size / 1e6:.1f} M px)")
    print(f"- ours {ours_s:.2f} s; 200-threshold loop {ref_s:.1f} s; ratio {ref_s / ours_s:.0f}x; "
          f"values {ours:.12f} vs {ref:.12f}, |diff| {abs(ours - ref):.1e}")
    print(f"- exact AUPRO of the same class: {exact:.6f} in {exact_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sklearn-pixels", type=float, default=50e6, help="pixels for the sklearn comparison")
    parser.add_argument("--loop-class", default="bottle", help="MVTec class for the loop comparison")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    print(f"numpy {np.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    protocol(rng)
    against_sklearn(rng, args.sklearn_pixels)
    against_loop(rng, args.loop_class)


if __name__ == "__main__":
    main()
