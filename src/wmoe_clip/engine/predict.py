"""Prediction on loose image files, for a practitioner with images and no dataset.

Each readable image goes through the evaluation's pre-processing (RGB, bicubic squash to the model's
size, OpenAI mean/std), the model (a checkpoint, or the run config of a method that does not train),
σ-smoothing and the model's evaluation image score; a method with class-name prompts (``clip``) needs
the images' class name. Outputs in OUT_DIR:
``scores.json`` and ``scores.csv`` (one row per input with its ``status``, ``scored`` or ``skipped``,
and the reason for a skip) and ``heatmaps/<NNNN>_<name>.png``, the map overlaid on the image at its
decoded size (fixed [0, 1] scale).

One bad input never stops the others: a file that is not a regular file (a FIFO, a folder) is
skipped without being opened; an image is decoded only when its header announces at most
``max_pixels`` pixels — a larger JPEG is decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder itself
(PIL ``draft``), any other oversized file is skipped undecoded; ``max_pixels`` replaces PIL's own
decompression-bomb limit (``data.images``). An EXIF orientation is applied, as viewers show the
image, and said in the row's ``note``. ``heatmaps/`` is written beside itself and swapped in as a whole, so no
heatmap of an earlier run stays behind; it must hold nothing but predict's own files.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..data.images import DEFAULT_MAX_PIXELS, ImageTooLarge
from ..data.images import read_image as read_image_file
from ..errors import WMoEError, os_error_message
from ..io import atomic_dir, check_output, check_writable, json_text, write_files
from ..model import registry
from ..model.source import load_model
from . import runtime
from .figures import overlay
from .smoothing import gaussian_smooth

FIELDS = ("path", "status", "image_score", "global_score", "map_max", "heatmap", "decoded_size", "note", "error")
HEATMAP_DIR = "heatmaps"
_HEATMAP_NAME = re.compile(r"^\d{4,}_.*\.png$")


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def read_image(path: Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[torch.Tensor, np.ndarray, str | None]:
    """The normalised 3×S×S tensor, the decoded RGB array and a note when it was decoded reduced or rotated;
    raises ``WMoEError`` for anything that is not a readable image within ``max_pixels``."""
    from ..data.dataset import preprocess_image, to_rgb

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise WMoEError(f"{path}: no such file") from None
    except OSError as exc:
        raise WMoEError(os_error_message(exc)) from None
    if not stat.S_ISREG(mode):
        raise WMoEError(f"{path}: {_file_kind(mode)}, not an image file; not opened")
    try:
        decoded = read_image_file(path, max_pixels, f"--max-pixels {max_pixels}")
        rgb = to_rgb(decoded.image)
    except ImageTooLarge as exc:
        raise WMoEError(f"{path}: {exc}; shrink the image or raise --max-pixels") from None
    except Image.DecompressionBombError as exc:
        raise WMoEError(f"{path}: not decoded, a possible decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise WMoEError(f"{path}: not a readable image ({exc})") from None
    note = "; ".join(decoded.notes) or None
    return preprocess_image(rgb, size), np.asarray(rgb), note


def _check_heatmap_folder(heat_dir: Path) -> None:
    """The heatmap folder is replaced as a whole: it may hold predict's own files only."""
    if not heat_dir.exists():
        return
    if not heat_dir.is_dir():
        raise WMoEError(f"{heat_dir} is a file; predict writes its heatmaps there: move it away or choose another --out")
    foreign = sorted(p.name for p in heat_dir.iterdir() if not (p.is_file() and _HEATMAP_NAME.match(p.name)))
    if foreign:
        raise WMoEError(f"{heat_dir} holds files predict did not write ({', '.join(foreign[:5])}); predict replaces "
                        "this folder as a whole: move them away or choose another --out")


def predict(checkpoint: str | Path | None, images: list[str | Path], out_dir: str | Path,
            max_pixels: int = DEFAULT_MAX_PIXELS, *, config: str | Path | None = None,
            class_name: str | None = None, force: bool = False) -> list[dict[str, Any]]:
    """Score ``images`` with the model in ``checkpoint`` (or of the run config ``config`` of a method that
    does not train), all of class ``class_name``; returns one row per input (see ``FIELDS``). ``force``
    replaces files at the scores' paths that predict did not write (never an input)."""
    out_dir = Path(out_dir)
    if max_pixels < 1:
        raise WMoEError(f"--max-pixels must be at least 1, got {max_pixels}")
    check_writable(out_dir, "--out", folder=True)
    heat_dir = out_dir / HEATMAP_DIR
    _check_heatmap_folder(heat_dir)
    inputs = [checkpoint, config, *images]
    in_heatmaps = [str(p) for p in images if Path(p).resolve().is_relative_to(heat_dir.resolve())]
    if in_heatmaps:
        raise WMoEError(f"{in_heatmaps[0]} lies in {heat_dir}, which predict replaces as a whole: move the image "
                        "away or choose another --out")
    check_output(out_dir / "scores.json", "--out", "scores-json", inputs=inputs, force=force)
    check_output(out_dir / "scores.csv", "--out", "scores-csv", inputs=inputs, force=force)
    model, model_file = load_model(checkpoint, config)
    cfg = model.cfg
    if model.NEEDS_CLASSES and class_name is None:
        raise WMoEError(f"method {cfg.method} prompts with the images' class name: give --class-name, e.g. bottle")
    device = runtime.select_device(cfg.eval.device)
    model = model.to(device).eval()
    size = cfg.model.image_size
    rows: list[dict[str, Any]] = []
    with atomic_dir(heat_dir) as tmp_heat:
        for number, name in enumerate(images):
            path = Path(name)
            row: dict[str, Any] = {k: None for k in FIELDS} | {"path": str(path), "status": "skipped"}
            rows.append(row)
            try:
                tensor, native, note = read_image(path, size, max_pixels)
            except WMoEError as exc:
                row["error"] = str(exc)
                print(f"wmoe-clip predict: skipped {exc}", file=sys.stderr)
                continue
            with torch.no_grad():
                out = model(tensor.unsqueeze(0).to(device), None if class_name is None else [class_name])
                smoothed = gaussian_smooth(out.anomaly_map.float(), cfg.eval.sigma)
                score = model.eval_image_score(out.global_score, smoothed)
                native_map = F.interpolate(smoothed[:, None], size=native.shape[:2], mode="bilinear",
                                           align_corners=False)
            heatmap = f"{number:04d}_{path.stem}.png"
            Image.fromarray(overlay(native, native_map[0, 0].cpu().numpy())).save(tmp_heat / heatmap, format="PNG")
            row.update(status="scored", image_score=float(score[0]), global_score=float(out.global_score[0]),
                       map_max=float(smoothed.amax()), heatmap=f"{HEATMAP_DIR}/{heatmap}",
                       decoded_size=f"{native.shape[1]}x{native.shape[0]}", note=note)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    doc = {"checkpoint": str(model_file), "method": cfg.method, "variant": registry.run_name(cfg),
           "class_name": class_name, "max_pixels": max_pixels, "images": rows}
    write_files([(out_dir / "scores.csv", buffer.getvalue().encode("utf-8")),
                 (out_dir / "scores.json", json_text(doc).encode("utf-8"))])
    return rows
