"""The dataset registry: one declarative entry per benchmark, read from ``registry.yaml``.

Everything that differs between the 14 datasets and is data rather than logic lives here: display
name, domain, which metric levels apply, the class list with the expected zero-shot test counts,
sources with checksums, licence, protocol and, where a login stands in the way, what the user must
download by hand. Converters, the loader and the report read it; nothing keeps its own table.
"""

from __future__ import annotations

import builtins
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import WMoEError

REGISTRY_FILE = Path(__file__).with_name("registry.yaml")

# Table 1 order of the paper.
KEYS = (
    "mvtec", "visa", "btad", "ksdd2", "dagm", "dtd", "headct",
    "brainmri", "br35h", "isic", "colondb", "clinicdb", "endo", "kvasir",
)

Counts = tuple[int, int]


@dataclass(frozen=True)
class FileSpec:
    url: str
    filename: str
    sha256: str | None = None


@dataclass(frozen=True)
class DownloadSpec:
    kind: str  # "http" (files can be fetched) or "manual" (login, form or Google Drive)
    files: tuple[FileSpec, ...] = ()
    manual: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    key: str
    display_name: str
    domain: str
    image_metrics: bool
    pixel_metrics: bool
    # class -> expected test (normal, anomalous); None where the per-class split is not published.
    classes: dict[str, Counts | None]
    licence: str
    homepage: str
    protocol: str
    download: DownloadSpec
    citation: str
    # Dataset-wide expected test (normal, anomalous); equals the sum of ``classes`` when all are known.
    totals: Counts = (0, 0)
    # A mask pixel is foreground iff its value is > mask_threshold (0 everywhere but JPEG masks).
    mask_threshold: int = 0

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.classes)


_FIELDS = {
    "display_name", "domain", "image_metrics", "pixel_metrics", "classes", "totals", "licence",
    "homepage", "protocol", "download", "citation", "mask_threshold",
}


def _counts(value: Any, where: str) -> Counts:
    if not (isinstance(value, list) and len(value) == 2 and builtins.all(isinstance(v, int) and v >= 0 for v in value)):
        raise WMoEError(f"{REGISTRY_FILE}: {where} must be [normal, anomalous] non-negative integers, got {value!r}")
    return (value[0], value[1])


def _parse(key: str, raw: dict[str, Any]) -> DatasetSpec:
    where = f"dataset {key!r}"
    unknown = set(raw) - _FIELDS
    missing = _FIELDS - {"totals", "mask_threshold"} - set(raw)
    if unknown or missing:
        raise WMoEError(
            f"{REGISTRY_FILE}: {where}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}"
        )
    if raw["domain"] not in ("industrial", "medical"):
        raise WMoEError(f"{REGISTRY_FILE}: {where}: domain must be industrial or medical")
    classes = {
        str(name): None if c is None else _counts(c, f"{where} class {name!r}") for name, c in raw["classes"].items()
    }
    known = [c for c in classes.values() if c is not None]
    if len(known) == len(classes):
        totals = (sum(c[0] for c in known), sum(c[1] for c in known))
        if "totals" in raw and _counts(raw["totals"], f"{where} totals") != totals:
            raise WMoEError(f"{REGISTRY_FILE}: {where}: totals {raw['totals']} differ from the class sum {list(totals)}")
    elif "totals" in raw:
        totals = _counts(raw["totals"], f"{where} totals")
    else:
        raise WMoEError(f"{REGISTRY_FILE}: {where}: classes without counts need dataset 'totals'")
    dl = raw["download"]
    if dl.get("kind") not in ("http", "manual"):
        raise WMoEError(f"{REGISTRY_FILE}: {where}: download.kind must be http or manual")
    files = tuple(FileSpec(url=f["url"], filename=f["filename"], sha256=f.get("sha256")) for f in dl.get("files") or ())
    if dl["kind"] == "http" and not files:
        raise WMoEError(f"{REGISTRY_FILE}: {where}: an http download needs files")
    if dl["kind"] == "manual" and not dl.get("manual"):
        raise WMoEError(f"{REGISTRY_FILE}: {where}: a manual download needs instructions")
    return DatasetSpec(
        key=key,
        display_name=raw["display_name"],
        domain=raw["domain"],
        image_metrics=bool(raw["image_metrics"]),
        pixel_metrics=bool(raw["pixel_metrics"]),
        classes=classes,
        licence=raw["licence"],
        homepage=raw["homepage"],
        protocol=raw["protocol"],
        download=DownloadSpec(kind=dl["kind"], files=files, manual=dl.get("manual") or ""),
        citation=raw["citation"],
        totals=totals,
        mask_threshold=int(raw.get("mask_threshold", 0)),
    )


@functools.cache
def _load() -> dict[str, DatasetSpec]:
    with open(REGISTRY_FILE, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if list(raw) != list(KEYS):
        raise WMoEError(f"{REGISTRY_FILE}: keys must be {list(KEYS)} in Table 1 order, got {list(raw)}")
    return {key: _parse(key, raw[key]) for key in KEYS}


def keys() -> tuple[str, ...]:
    """The 14 dataset keys in the paper's Table 1 order."""
    return KEYS


def all() -> tuple[DatasetSpec, ...]:  # noqa: A001 - the registry API name
    return tuple(_load().values())


def get(key: str) -> DatasetSpec:
    specs = _load()
    if key not in specs:
        raise WMoEError(f"unknown dataset {key!r}; known datasets: {', '.join(KEYS)}")
    return specs[key]
