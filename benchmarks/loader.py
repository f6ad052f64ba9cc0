"""Loader throughput: images per second, and per CPU core, from the files to the encoder's input.

Generates a prepared dataset of two realistic kinds (1024×1024 JPEG like VisA/MVTec-sized photos,
700×700 PNG with PNG masks like the polyp sets), then runs one pass of the engine's ``ImageSource``
(the loader of training, evaluation and the cache build) over each kind, with an encoder that returns
its input, so what is timed is: decode, RGB, bicubic squash, masks, collation, the transfer from the
worker processes, and normalisation to the float32 batch the encoder gets. Worker start-up is included.
Two devices: ``cpu`` (the normalisation runs in the main process, as in a CPU run) and ``meta``
(tensors without data: the transfer and the normalisation cost nothing, which is what the CPUs pay in
a GPU run, where both happen on the GPU; pinning, 0.8 MB per image, is left out).

Two figures per row: images/s (wall clock) and images per CPU-second (the CPU time of the main
process and of its workers together), i.e. what one core sustains — the figure that decides how many
cores keep a GPU fed, and one that other jobs on shared cores disturb much less than the wall clock.
It also prints the load average before and after.

    .venv/bin/python benchmarks/loader.py                 # 518 px, 48 images per kind, workers 0 1 2
    .venv/bin/python benchmarks/loader.py --profile       # plus cProfile of one in-process pass (JPEG, meta)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import platform
import pstats
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image
from tqdm import tqdm

from wmoe_clip.data import AnomalyDataset
from wmoe_clip.engine.feature_cache import ImageSource

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


class _Identity:
    """Stands in for the encoder: the batch it is given is the loader's output."""

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return images


def _cpu_seconds() -> float:
    """CPU time of this process, of its exited children, and of its live ones (persistent workers)."""
    own, done = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    live = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = child.cpu_times()
            live += times.user + times.system
    return own.ru_utime + own.ru_stime + done.ru_utime + done.ru_stime + live


def one_pass(ds: AnomalyDataset, workers: int, batch: int, device: str = "cpu") -> tuple[float, float]:
    """(images/s, images per CPU-second) of one pass, worker start-up included."""
    plan = [list(range(i, min(i + batch, len(ds)))) for i in range(0, len(ds), batch)]
    cpu0, start = _cpu_seconds(), time.perf_counter()
    source = ImageSource(ds, _Identity(), torch.device(device), workers)
    n = sum(b.feats.shape[0] for b in source.batches(plan))
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
    del source  # its workers exit before the next pass is timed
    return n / wall, n / cpu


def profile(ds: AnomalyDataset, batch: int, top: int = 12) -> None:
    """cProfile of one in-process pass with one torch thread, as in a loader worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    prof = cProfile.Profile()
    prof.runcall(one_pass, ds, 0, batch, "meta")
    torch.set_num_threads(threads)
    print(f"\ncProfile of one in-process pass (1 thread, device meta) over {len(ds)} images "
          f"({ds.class_names[0]}), by own time:")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="images per kind")
    ap.add_argument("--size", type=int, default=518)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--devices", nargs="+", default=["cpu", "meta"], choices=["cpu", "meta"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="passes per row; the best is reported")
    ap.add_argument("--profile", action="store_true", help="also profile one in-process pass over the JPEGs")
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = make_dataset(Path(tmp), args.n)
        rows = []
        for cls, (src, fmt) in KINDS.items():
            ds = AnomalyDataset(prepared, image_size=args.size, classes=[cls])
            for w in args.workers:
                for dev in args.devices:
                    runs = [one_pass(ds, w, args.batch, dev) for _ in range(args.repeats)]
                    ips, per_core = (max(r[i] for r in runs) for i in (0, 1))
                    rows.append(f"| {src}×{src} {fmt} (half with PNG masks) | {w} | {dev} | {ips:.1f} | {per_core:.1f} |")
        if args.profile:
            profile(AnomalyDataset(prepared, image_size=args.size, classes=["jpeg1024"]), args.batch)
    load_after = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")
    print(f"{args.n} images per kind, output {args.size}×{args.size}, batch {args.batch}, best of {args.repeats}")
    print("load average (1, 5, 15 min): before " + ", ".join(f"{x:.2f}" for x in load_before)
          + "; after " + ", ".join(f"{x:.2f}" for x in load_after) + "\n")
    print("| input | workers | device | images/s | images per CPU-second |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
