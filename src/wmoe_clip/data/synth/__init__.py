"""Synthetic stand-ins: a miniature of each dataset in its native layout, with planted defects.

``generate(key, out_dir, size, seed, variant)`` writes ``size`` test images per class (half normal,
half anomalous; all anomalous for the pixel-only sets), a few normal train images where the native
layout has a train split, and the masks of the planted defects, in the layout of the protocol
``variant`` (default: the registry's default). ``key`` may also be ``folder``: a user's own dataset
as ``wmoe-clip prepare folder`` reads it (variant None: class folders; ``csv``: a CSV listing), with
what users' folders carry: a stray file, an image-only class, a class with an anomalous image
without a mask, and a pixel-only class. Deterministic for a given seed. The whole folder is written
atomically, so a half-written stand-in is never taken for a finished one.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import WMoEError
from ...io import atomic_dir
from .. import registry
from ..meta import SYNTHETIC_MARKER
from .layouts import FOLDER_CLASSES, WRITERS, Writer

DEFAULT_SIZE = 8
CUSTOM = "folder"
CUSTOM_VARIANTS = (None, "csv")


def _spec(key: str, variant: str | None) -> registry.DatasetSpec:
    if key != CUSTOM:
        return registry.get(key, variant)
    if variant not in CUSTOM_VARIANTS:
        raise WMoEError(f"synth {CUSTOM}: unknown --variant {variant!r}; use csv, or none for class folders")
    return registry.custom_spec("parts", "parts", True, True, FOLDER_CLASSES, f"synthetic {variant or 'folder'}")


def generate(key: str, out_dir: str | os.PathLike, size: int = DEFAULT_SIZE, seed: int = 0,
             variant: str | None = None) -> list[dict]:
    """Write the stand-in of ``key`` into ``out_dir`` (replacing it); returns the ground truth records.

    Each truth record has ``split``, ``cls_name``, ``img_path`` and ``mask_path`` (relative to
    ``out_dir``, '' where none) and ``anomaly``.
    """
    spec = _spec(key, variant)
    if size < 2:
        raise WMoEError(f"synth {key}: --size must be at least 2 (one normal and one anomalous image), got {size}")
    writer_key = (key, variant if key == CUSTOM else spec.variant)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        writer = Writer(root=tmp, spec=spec, seed=seed, shape_key=key)
        WRITERS[writer_key](writer, size)
        # Read by the engine so that results (and every report table) say they come from synthetic data.
        flags = f" --variant {writer_key[1]}" if writer_key[1] else ""
        (tmp / SYNTHETIC_MARKER).write_text(f"wmoe-clip synth {key} --size {size} --seed {seed}{flags}\n")
    return writer.truth
