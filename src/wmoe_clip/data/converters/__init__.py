"""One converter per dataset (``<key>.py``): its ``LAYOUT`` and ``convert(ctx) -> splits``.

A dataset with protocol variants (registry ``variants``) has ``VARIANTS`` instead: name -> Variant
(layout and convert), in the order ``prepare`` tries the layouts to detect the variant. Each module's
docstring states the native layout it reads and the pitfalls it handles; the shared logic (name-based
pairing, MVTec-style folders, labelled folders) lives in ``common``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..registry import get as _spec
from .common import Variant


def get(key: str) -> ModuleType:
    """The converter module of a registry key (unknown keys raise the registry's error)."""
    _spec(key)
    return importlib.import_module(f"{__name__}.{key}")


def variants(key: str) -> dict[str | None, Variant]:
    """The protocol variants of ``key`` in detection order; ``{None: ...}`` for a single protocol."""
    module = get(key)
    if hasattr(module, "VARIANTS"):
        return dict(module.VARIANTS)
    return {None: Variant(module.LAYOUT, module.convert)}
