"""Synthetic stand-ins: a miniature of each dataset in its native layout, with planted defects.

``generate(key, out_dir, size, seed)`` writes ``size`` test images per class (half normal, half
anomalous; all anomalous for the pixel-only sets), a few normal train images where the native layout
has a train split, and the masks of the planted defects. Deterministic for a given seed. The whole
folder is written atomically, so a half-written stand-in is never taken for a finished one.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import WMoEError
from ...io import atomic_dir
from .. import registry
from ..meta import SYNTHETIC_MARKER
from .layouts import WRITERS, Writer

DEFAULT_SIZE = 8


def generate(key: str, out_dir: str | os.PathLike, size: int = DEFAULT_SIZE, seed: int = 0) -> list[dict]:
    """Write the stand-in of ``key`` into ``out_dir`` (replacing it); returns the ground truth records.

    Each truth record has ``split``, ``cls_name``, ``img_path`` and ``mask_path`` (relative to
    ``out_dir``, '' where none) and ``anomaly``.
    """
    spec = registry.get(key)
    if size < 2:
        raise WMoEError(f"synth {key}: --size must be at least 2 (one normal and one anomalous image), got {size}")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        writer = Writer(root=tmp, spec=spec, seed=seed)
        WRITERS[key](writer, size)
        # Read by the engine so that results (and every report table) say they come from synthetic data.
        (tmp / SYNTHETIC_MARKER).write_text(f"wmoe-clip synth {key} --size {size} --seed {seed}\n")
    return writer.truth
