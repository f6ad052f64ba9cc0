"""The methods on the frozen CLIP backbone (one folder each, listed in ``registry``), the backbone,
and checkpoints.

Names are imported on first use (PEP 562), so that ``wmoe_clip.model.registry`` can be read without
importing torch (the workflow does, when Snakemake builds its DAG).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ImageFeatures": ".base",
    "ModelOutput": ".base",
    "FrozenBackboneModel": ".base",
    "build_model": ".registry",
    "load_checkpoint": ".checkpoint",
    "read_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
