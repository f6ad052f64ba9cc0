"""Loader throughput: decoded, resized and normalised images per second through ``AnomalyDataset``.

Generates a prepared dataset of two realistic kinds (1024×1024 JPEG like VisA/MVTec-sized photos,
700×700 PNG with PNG masks like the polyp sets), then iterates a ``DataLoader`` over each kind with
0, 1 and 2 worker processes and reports images/s (the best of ``--repeats`` full passes, worker
start-up included). Prints a Markdown table for benchmarks/loader.md.

    .venv/bin/python benchmarks/loader.py                 # 518 px, 48 images per kind, workers 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from wmoe_clip.data import AnomalyDataset

KINDS = {"jpeg1024": (1024, "JPEG"), "png700": (700, "PNG")}


def _photo(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth shading plus texture noise: compresses like a photograph, not like a flat test card."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([180 * xx + 40, 160 * yy + 50, 120 * (xx * yy) + 60], axis=-1)
    noise = rng.normal(0, 12, (size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_dataset(root: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    raw, prepared = root / "raw", root / "prepared"
    test: dict[str, list] = {}
    for cls, (size, fmt) in KINDS.items():
        (raw / cls).mkdir(parents=True)
        ext = ".jpg" if fmt == "JPEG" else ".png"
        for i in tqdm(range(n), desc=f"generating {cls}"):
            img = f"{cls}/{i:03d}{ext}"
            Image.fromarray(_photo(rng, size)).save(raw / img, **({"quality": 90} if fmt == "JPEG" else {}))
            anomaly = i % 2
            mask = ""
            if anomaly:
                mask = f"{cls}/{i:03d}_mask.png"
                m = np.zeros((size, size), dtype=np.uint8)
                y, x = rng.integers(0, size * 3 // 4, 2)
                m[y:y + size // 5, x:x + size // 6] = 255
                Image.fromarray(m).save(raw / mask)
            test.setdefault(cls, []).append({
                "img_path": img, "mask_path": mask, "cls_name": cls, "specie_name": "defect" if anomaly else "good",
                "anomaly": anomaly, "dataset_name": "bench",
            })
    prepared.mkdir()
    (prepared / "meta.json").write_text(json.dumps({"root": "../raw", "dataset": "bench", "train": {}, "test": test}))
    return prepared


def throughput(prepared: Path, cls: str, size: int, workers: int, batch: int, repeats: int) -> float:
    ds = AnomalyDataset(prepared, image_size=size, classes=[cls])
    best = 0.0
    for _ in range(repeats):
        loader = DataLoader(ds, batch_size=batch, num_workers=workers)
        start = time.perf_counter()
        n = sum(b["image"].shape[0] for b in loader)
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="images per kind")
    ap.add_argument("--size", type=int, default=518)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = make_dataset(Path(tmp), args.n)
        rows = []
        for cls, (src, fmt) in KINDS.items():
            for w in args.workers:
                ips = throughput(prepared, cls, args.size, w, args.batch, args.repeats)
                rows.append(f"| {src}×{src} {fmt} (half with PNG masks) | {w} | {ips:.1f} |")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")
    print(f"{args.n} images per kind, output {args.size}×{args.size}, batch {args.batch}, best of {args.repeats}\n")
    print("| input | workers | images/s |\n|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
