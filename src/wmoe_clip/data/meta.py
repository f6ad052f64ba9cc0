"""The ``meta.json`` manifest: schema, validation, reading and writing.

A prepared dataset directory holds ``meta.json`` in the AnomalyCLIP schema with the project's
additions (docs/ARCHITECTURE.md, docs/DATASETS.md §3)::

    {"root": <RAW_DIR relative to the prepared dir>, "dataset": <key>, "protocol": <protocol | null>,
     "mask_threshold": <int>, "train": {cls: [record, ...]}, "test": {cls: [record, ...]},
     "custom": {"display_name", "image_metrics", "pixel_metrics", "description"}  (a user's dataset only)}

Each record has ``img_path``, ``mask_path`` ("" where none), ``cls_name``, ``specie_name``,
``anomaly`` (0/1) and ``dataset_name``; paths are relative to the raw root. ``mask_threshold``
(default 0) says which mask values count as foreground: ``value > mask_threshold``. ``protocol`` names
the registry protocol the data follows (absent or null: the dataset's only or default one).
A user's own dataset is no registry entry; its ``custom`` block holds what the registry would.
Manifests written before the protocols had their name (``"variant"``, and ``custom.protocol`` for
the description) are read as the current ones (``migrate``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema

from ..errors import WMoEError
from ..io import write_json
from . import registry
from .registry import DatasetSpec

META_FILE = "meta.json"

RECORD_FIELDS = ("img_path", "mask_path", "cls_name", "specie_name", "anomaly", "dataset_name")

_RECORD = {
    "type": "object",
    "required": list(RECORD_FIELDS),
    "properties": {
        "img_path": {"type": "string", "minLength": 1},
        "mask_path": {"type": "string"},
        "cls_name": {"type": "string", "minLength": 1},
        "specie_name": {"type": "string"},
        "anomaly": {"enum": [0, 1]},
        "dataset_name": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
}
_SPLIT = {"type": "object", "additionalProperties": {"type": "array", "items": _RECORD}}
_CUSTOM = {
    "type": "object",
    "required": ["display_name", "image_metrics", "pixel_metrics", "description"],
    "properties": {
        "display_name": {"type": "string", "minLength": 1},
        "image_metrics": {"type": "boolean"},
        "pixel_metrics": {"type": "boolean"},
        "description": {"type": "string"},
    },
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "required": ["root", "dataset", "train", "test"],
    "properties": {
        "root": {"type": "string", "minLength": 1},
        "dataset": {"type": "string", "minLength": 1},
        "protocol": {"type": ["string", "null"]},
        "mask_threshold": {"type": "integer", "minimum": 0},
        "train": _SPLIT,
        "test": _SPLIT,
        "custom": _CUSTOM,
    },
    # Capitalised "Train"/"Test" (AnomalyCLIP's DAGM.py) must fail here, not as a KeyError later.
    "additionalProperties": False,
}


def _relative_ok(path: str) -> bool:
    p = PurePosixPath(path)
    return not p.is_absolute() and ".." not in p.parts and "\\" not in path


def validate(meta: dict[str, Any], where: str = "meta.json") -> None:
    """Raise WMoEError naming ``where`` unless ``meta`` follows the schema and the record rules."""
    try:
        jsonschema.validate(meta, SCHEMA)
    except jsonschema.ValidationError as exc:
        loc = "/".join(str(p) for p in exc.absolute_path) or "<top>"
        raise WMoEError(f"{where}: invalid manifest at {loc}: {exc.message}") from None
    for split in ("train", "test"):
        for cls, records in meta[split].items():
            for i, r in enumerate(records):
                loc = f"{where}: {split}/{cls}[{i}]"
                if r["cls_name"] != cls:
                    raise WMoEError(f"{loc}: cls_name {r['cls_name']!r} filed under class {cls!r}")
                if r["dataset_name"] != meta["dataset"]:
                    raise WMoEError(f"{loc}: dataset_name {r['dataset_name']!r} is not {meta['dataset']!r}")
                if r["anomaly"] == 0 and r["mask_path"]:
                    raise WMoEError(f"{loc}: a normal image has a mask ({r['mask_path']})")
                for key in ("img_path", "mask_path"):
                    if r[key] and not _relative_ok(r[key]):
                        raise WMoEError(f"{loc}: {key} {r[key]!r} must be a relative POSIX path inside the root")


def custom_block(spec: DatasetSpec) -> dict[str, Any]:
    """What meta.json keeps of a user's dataset spec (``registry.custom_spec``)."""
    return {"display_name": spec.display_name, "image_metrics": spec.image_metrics,
            "pixel_metrics": spec.pixel_metrics, "description": spec.description}


def migrate(meta: Any) -> Any:
    """``meta`` with the keys of older manifests renamed: ``variant`` -> ``protocol`` and, in the custom
    block, ``protocol`` (then its description) -> ``description``. Anything else is left to ``validate``."""
    if not isinstance(meta, dict):
        return meta
    meta = dict(meta)
    if "variant" in meta and "protocol" not in meta:
        meta["protocol"] = meta.pop("variant")
    custom = meta.get("custom")
    if isinstance(custom, dict) and "protocol" in custom and "description" not in custom:
        meta["custom"] = {("description" if k == "protocol" else k): v for k, v in custom.items()}
    return meta


def dataset_spec(meta: dict[str, Any]) -> DatasetSpec:
    """The spec of a prepared dataset: the registry's (in the manifest's protocol), or a user dataset's own."""
    custom = meta.get("custom")
    if custom is None:
        return registry.get(meta["dataset"], meta.get("protocol"))
    return registry.custom_spec(meta["dataset"], custom["display_name"], custom["image_metrics"],
                                custom["pixel_metrics"], tuple(meta["test"]), custom["description"])


def write_meta(out_dir: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Validate and write ``out_dir/meta.json`` atomically; returns its path."""
    path = Path(out_dir) / META_FILE
    validate(meta, str(path))
    write_json(path, meta)
    return path


def load_meta(prepared_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Read, migrate and validate ``prepared_dir/meta.json``; returns (absolute raw root, manifest).

    The manifest's ``mask_threshold`` is filled in (0) when absent, so readers can rely on it.
    """
    path = Path(prepared_dir) / META_FILE
    if not path.is_file():
        raise WMoEError(f"{path} not found: run `wmoe-clip prepare DATASET --raw RAW_DIR --out {prepared_dir}` first")
    try:
        meta = migrate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WMoEError(f"{path}: not valid JSON ({exc}); re-run prepare") from None
    validate(meta, str(path))
    meta.setdefault("mask_threshold", 0)
    root = (Path(prepared_dir) / meta["root"]).resolve()
    if not root.is_dir():
        raise WMoEError(f"{path}: raw root {root} does not exist (was the raw folder moved?); re-run prepare")
    return root, meta


def data_folders(prepared_dir: str | os.PathLike) -> tuple[Path, ...]:
    """The folders a dataset is read from: the prepared folder and, when its manifest reads, the raw
    root (the inputs that no output of a command reading the dataset may overwrite)."""
    try:
        root, _ = load_meta(prepared_dir)
    except WMoEError:  # reported where the data is read, after the outputs are checked
        return (Path(prepared_dir),)
    return (Path(prepared_dir), root)


# Written by `wmoe-clip synth` into the raw root; results and reports say "synthetic data" when present.
SYNTHETIC_MARKER = "SYNTHETIC"


def is_synthetic(prepared_dir: str | os.PathLike) -> bool:
    """True when the prepared data's raw root was written by ``wmoe-clip synth``."""
    root, _ = load_meta(prepared_dir)
    return (root / SYNTHETIC_MARKER).is_file()
