"""One converter per dataset (``<key>.py``): its ``LAYOUT`` and ``convert(ctx) -> splits``.

Each module's docstring states the native layout it reads and the pitfalls it handles; the shared
logic (name-based pairing, MVTec-style folders, labelled folders) lives in ``common``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..registry import get as _spec


def get(key: str) -> ModuleType:
    """The converter module of a registry key (unknown keys raise the registry's error)."""
    _spec(key)
    return importlib.import_module(f"{__name__}.{key}")
