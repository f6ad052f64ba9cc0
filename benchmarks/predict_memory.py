"""Peak memory of ``wmoe-clip predict`` on one large photo, per size and format.

Writes a tiny model with random learnable weights (the cost is in decoding and drawing the heatmap,
not in the model), generates one photo-like image per case, runs ``wmoe-clip predict`` on it in a
fresh process and reports that process's peak resident memory (``ru_maxrss`` of the child), its
status and its decoded size. Prints a Markdown table for benchmarks/predict_memory.md.

    .venv/bin/python benchmarks/predict_memory.py                      # 48 MP PNG, 64 MP JPEG
    .venv/bin/python benchmarks/predict_memory.py --cases 8000x6000:PNG
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

WMOE_CLIP = str(Path(sys.executable).parent / "wmoe-clip")


def photo(width: int, height: int, path: Path, fmt: str) -> None:
    """Smooth shading plus noise, built in bands so that making it costs less than predicting it."""
    img = Image.new("RGB", (width, height))
    rng = np.random.default_rng(0)
    band = 512
    for top in range(0, height, band):
        rows = min(band, height - top)
        yy, xx = np.mgrid[top : top + rows, 0:width].astype(np.float32)
        base = np.stack([180 * xx / width + 40, 160 * yy / height + 50, 60 + 0 * xx], axis=-1)
        block = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        img.paste(Image.fromarray(block), (0, top))
    img.save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))


def checkpoint(path: Path) -> None:
    from wmoe_clip.config import load_config
    from wmoe_clip.model import build_model, save_checkpoint

    save_checkpoint(build_model(load_config("tiny")), path)


def measure(model: Path, image: Path, out: Path) -> dict:
    """Run predict under a fresh Python parent, whose RUSAGE_CHILDREN peak is then predict's alone."""
    cmd = [WMOE_CLIP, "predict", "--checkpoint", str(model), str(image), "--out", str(out)]
    probe = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], capture_output=True).returncode; "
             "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    rc, peak_kb = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True,
                                 check=True).stdout.split()
    rows = json.loads((out / "scores.json").read_text())["images"] if (out / "scores.json").is_file() else []
    return {"rc": int(rc), "peak_mb": int(peak_kb) / 1024, "row": rows[0] if rows else {"status": f"exit {rc}"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["8000x6000:PNG", "9240x6930:JPEG"],
                        help="WIDTHxHEIGHT:FORMAT, one predict process each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint(tmp / "model.pt")
        print(f"python {platform.python_version()}, {platform.machine()}\n")
        print("| image | file MB | status | decoded | peak RSS MB |\n|---|---|---|---|---|")
        for i, case in enumerate(args.cases):
            size, fmt = case.split(":")
            width, height = (int(v) for v in size.split("x"))
            image = tmp / f"photo{i}.{fmt.lower()}"
            photo(width, height, image, fmt)
            result = measure(tmp / "model.pt", image, tmp / f"out{i}")
            row = result["row"]
            print(f"| {width}×{height} {fmt} ({width * height / 1e6:.0f} MP) | {image.stat().st_size / 2**20:.0f} | "
                  f"{row.get('status', '?')} | {row.get('decoded_size') or '–'} | {result['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
