"""One module per registry dataset, ``<key>.py``: its native layout, converter and synthetic writer.

A module is found from its registry key (``registry.yaml``), so adding a dataset is its entry there
plus its module here. The module's docstring states the native layout it reads and the pitfalls it
handles; it defines

- ``SHAPE``: the image size of its synthetic stand-in (``synth.writer.Shape``), and
- for a dataset with one protocol: ``LAYOUT`` (how its root is recognised), ``convert(ctx) -> splits``
  and ``write(writer, size)`` (the stand-in in the native layout);
- for a dataset with several protocols (registry ``protocols``): ``PROTOCOLS``, name -> ``Protocol``
  (layout, convert, write), in the registry's order, which is also the order in which ``prepare``
  tries the layouts to detect the protocol.

The shared logic lives in ``wmoe_clip.data.convert`` (pairing by name, MVTec-style folders, labelled
folders) and ``wmoe_clip.data.synth.writer`` (drawing, writing, the shared layouts).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from ...errors import WMoEError
from .. import registry
from ..convert import Context, Layout, Splits


@dataclass(frozen=True)
class Protocol:
    """One protocol of a dataset: how its root looks, how it converts and how its stand-in is written."""

    layout: Layout
    convert: Callable[[Context], Splits]
    # write(writer: synth.writer.Writer, size: int): the stand-in in this protocol's layout. Only the
    # dataset modules import the writer library (synth imports this package to find them).
    write: Callable[..., None]


def _path(key: str) -> str:
    return f"src/wmoe_clip/data/datasets/{key}.py"


def module(key: str) -> ModuleType:
    """The module of a registry key (unknown keys raise the registry's error)."""
    registry.get(key)
    name = f"{__name__}.{key}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise WMoEError(f"dataset {key!r} is in the registry but has no module {_path(key)}; add it "
                        "(LAYOUT, convert, write and SHAPE: see docs/ARCHITECTURE.md, adding a dataset)") from None


def _attribute(key: str, mod: ModuleType, name: str):
    if not hasattr(mod, name):
        raise WMoEError(f"{_path(key)}: defines no {name} (a dataset module needs SHAPE and either PROTOCOLS "
                        "or LAYOUT, convert and write: see docs/ARCHITECTURE.md, adding a dataset)")
    return getattr(mod, name)


def protocols(key: str) -> dict[str | None, Protocol]:
    """The protocols of ``key`` in detection order; ``{None: ...}`` for a dataset with one protocol."""
    mod = module(key)
    names = registry.get(key).protocols
    if not names:
        return {None: Protocol(*(_attribute(key, mod, a) for a in ("LAYOUT", "convert", "write")))}
    found = dict(_attribute(key, mod, "PROTOCOLS"))
    if tuple(found) != names:
        raise WMoEError(f"{_path(key)}: PROTOCOLS {list(found)} differ from the registry's protocols of {key} "
                        f"{list(names)} (same names, same order)")
    return found


def shape(key: str):
    """The image size of ``key``'s synthetic stand-in (its module's ``SHAPE``, a ``synth.writer.Shape``)."""
    return _attribute(key, module(key), "SHAPE")
