"""Prediction on loose image files, for a practitioner with images and no dataset.

Each readable image goes through the evaluation's pre-processing (RGB, bicubic squash to the model's
size, OpenAI mean/std), the model, σ-smoothing and the evaluation's image score. Outputs in OUT_DIR:
``scores.json`` and ``scores.csv`` (one row per input, with the error for unreadable ones) and
``heatmaps/<NNNN>_<name>.png``, the map overlaid on the image at its native size (fixed [0, 1] scale).
An unreadable file is reported on stderr and in the tables; the other files are still processed.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..errors import WMoEError
from ..io import atomic_path, write_json, write_text
from . import runtime
from .evaluate import image_scores
from .figures import overlay
from .smoothing import gaussian_smooth

FIELDS = ("path", "image_score", "global_score", "map_max", "heatmap", "error")


def read_image(path: Path, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The normalised 3×S×S tensor and the native RGB array of ``path``; raises ``WMoEError`` if unreadable."""
    from ..data.dataset import preprocess_image, to_rgb

    try:
        with Image.open(path) as img:
            img.load()
            rgb = to_rgb(img)
    except FileNotFoundError:
        raise WMoEError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise WMoEError(f"{path}: not a readable image ({exc})") from None
    return preprocess_image(rgb, size), np.asarray(rgb)


def predict(checkpoint: str | Path, images: list[str | Path], out_dir: str | Path) -> list[dict[str, Any]]:
    """Score ``images`` with the model in ``checkpoint``; returns one row per input (see ``FIELDS``)."""
    from ..model import load_checkpoint

    out_dir = Path(out_dir)
    model = load_checkpoint(checkpoint, map_location="cpu")
    cfg = model.cfg
    device = runtime.select_device(cfg.eval.device)
    model = model.to(device).eval()
    size = cfg.model.image_size
    rows: list[dict[str, Any]] = []
    for number, name in enumerate(images):
        path = Path(name)
        row: dict[str, Any] = {k: None for k in FIELDS} | {"path": str(path)}
        rows.append(row)
        try:
            tensor, native = read_image(path, size)
        except WMoEError as exc:
            row["error"] = str(exc)
            print(f"wmoe-clip predict: skipped {exc}", file=sys.stderr)
            continue
        with torch.no_grad():
            out = model(tensor.unsqueeze(0).to(device))
            smoothed = gaussian_smooth(out.anomaly_map.float(), cfg.eval.sigma)
            score = image_scores(out.global_score, smoothed, cfg.model.alpha)
            native_map = F.interpolate(smoothed[:, None], size=native.shape[:2], mode="bilinear", align_corners=False)
        heatmap = out_dir / "heatmaps" / f"{number:04d}_{path.stem}.png"
        with atomic_path(heatmap, suffix=".png") as tmp:
            Image.fromarray(overlay(native, native_map[0, 0].cpu().numpy())).save(tmp, format="PNG")
        row.update(image_score=float(score[0]), global_score=float(out.global_score[0]),
                   map_max=float(smoothed.amax()), heatmap=str(heatmap.relative_to(out_dir)))
    write_json(out_dir / "scores.json", {"checkpoint": str(checkpoint), "variant": cfg.variant, "images": rows})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    write_text(out_dir / "scores.csv", buffer.getvalue())
    return rows
