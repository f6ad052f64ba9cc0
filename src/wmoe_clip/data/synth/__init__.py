"""Synthetic stand-ins: a miniature of each dataset in its native layout, with planted defects.

``generate(key, out_dir, size, seed, protocol)`` writes ``size`` test images per class (half normal,
half anomalous; all anomalous for the pixel-only sets), a few normal train images where the native
layout has a train split, and the masks of the planted defects, in the layout of ``protocol``
(default: the registry's default), with the writer of the dataset's module
(``wmoe_clip.data.datasets.<key>``). ``key`` may also be ``folder``: a user's own dataset as
``wmoe-clip prepare folder`` reads it (protocol None: class folders; ``csv``: a CSV listing; see
``synth.folder``). Deterministic for a given seed. The whole folder is written atomically, so a
half-written stand-in is never taken for a finished one.

The folder is replaced as a whole, so only a folder that is missing, empty or an earlier stand-in
(it carries the ``SYNTHETIC`` marker) is replaced; anything else needs ``force``. A folder holding
the current directory or the wmoe-clip source tree is never replaced.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ...errors import WMoEError
from ...io import atomic_dir, check_writable
from .. import datasets, registry
from ..meta import SYNTHETIC_MARKER
from . import folder
from .writer import Shape, Writer

DEFAULT_SIZE = 8
CUSTOM = registry.CUSTOM_COMMAND


def _source_tree() -> Path | None:
    return next((p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file()), None)


def check_replaceable(out_dir: Path, force: bool) -> None:
    """Refuse to replace a folder that ``synth`` did not write (unless ``force``), or one that holds
    the current directory or the source tree (always)."""
    target = out_dir.resolve()
    for name, protected in (("the current folder", Path.cwd().resolve()), ("the wmoe-clip source tree", _source_tree())):
        if protected is not None and (protected == target or target in protected.parents):
            raise WMoEError(f"refusing to replace --out {out_dir}: it holds {name} ({protected}); "
                            "give a new folder, e.g. resources/raw/DATASET")
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise WMoEError(f"--out {out_dir} is a file; give a folder")
    if force or (out_dir / SYNTHETIC_MARKER).is_file() or not any(out_dir.iterdir()):
        return
    raise WMoEError(f"--out {out_dir} exists and was not written by wmoe-clip synth (it has no "
                    f"{SYNTHETIC_MARKER} marker), and synth replaces its folder as a whole; give a new folder, "
                    "or pass --force to replace it")


def _spec_and_writer(key: str, protocol: str | None) -> tuple[registry.DatasetSpec, Shape, Callable[[Writer, int], None]]:
    if key != CUSTOM:
        spec = registry.get(key, protocol)
        return spec, datasets.shape(key), datasets.protocols(key)[spec.protocol].write
    if protocol not in folder.WRITERS:
        raise WMoEError(f"synth {CUSTOM}: unknown --protocol {protocol!r}; use csv, or none for class folders")
    spec = registry.custom_spec("parts", "parts", True, True, folder.FOLDER_CLASSES, f"synthetic {protocol or 'folder'}")
    return spec, folder.SHAPE, folder.WRITERS[protocol]


def generate(key: str, out_dir: str | os.PathLike, size: int = DEFAULT_SIZE, seed: int = 0,
             protocol: str | None = None, force: bool = False) -> list[dict]:
    """Write the stand-in of ``key`` into ``out_dir`` (replacing it, see :func:`check_replaceable`);
    returns the ground truth records.

    Each truth record has ``split``, ``cls_name``, ``img_path`` and ``mask_path`` (relative to
    ``out_dir``, '' where none) and ``anomaly``.
    """
    spec, shape, write = _spec_and_writer(key, protocol)
    if size < 2:
        raise WMoEError(f"synth {key}: --size must be at least 2 (one normal and one anomalous image), got {size}")
    written = protocol if key == CUSTOM else spec.protocol
    out_dir = Path(out_dir)
    check_replaceable(out_dir, force)
    check_writable(out_dir, "--out", folder=True, replaced=True)
    with atomic_dir(out_dir) as tmp:
        writer = Writer(root=tmp, spec=spec, seed=seed, shape=shape)
        write(writer, size)
        # Read by the engine so that results (and every report table) say they come from synthetic data.
        flags = f" --protocol {written}" if written else ""
        (tmp / SYNTHETIC_MARKER).write_text(f"wmoe-clip synth {key} --size {size} --seed {seed}{flags}\n")
    return writer.truth
