"""The dataset registry: one declarative entry per benchmark, read from ``registry.yaml``.

Everything that differs between the 14 datasets and is data rather than logic lives here: display
name, domain, which metric levels apply, the class list with the expected zero-shot test counts,
sources with checksums, licence, protocol and, where a login stands in the way, what the user must
download by hand. Converters, the loader and the report read it; nothing keeps its own table.

A dataset published in several protocols (KSDD2, DAGM) has *variants*, each with its own classes,
counts and protocol; ``get(key, variant)`` returns the spec of one (the first, the project default,
when ``variant`` is None). A user's own dataset (``wmoe-clip prepare folder``) is no registry entry:
``custom_spec`` derives its spec from what was found, and ``check_custom_name`` keeps its name apart
from the registry keys.
"""

from __future__ import annotations

import builtins
import functools
import re
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

CUSTOM_DOMAIN = "custom"
# Names of users' own datasets: also folder names and Snakemake wildcard values.
CUSTOM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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
    # The protocol variant this spec describes (None for a dataset with one protocol) and all of them.
    variant: str | None = None
    variants: tuple[str, ...] = ()
    # Seed of a variant's balanced random draw (KSDD2 official-balanced), recorded in prepare.json.
    balance_seed: int | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.classes)

    @property
    def custom(self) -> bool:
        """A user's own dataset (``wmoe-clip prepare folder``), not one of the 14 benchmarks."""
        return self.domain == CUSTOM_DOMAIN


_FIELDS = {
    "display_name", "domain", "image_metrics", "pixel_metrics", "classes", "totals", "licence",
    "homepage", "protocol", "download", "citation", "mask_threshold", "variants",
}
_OPTIONAL = {"totals", "mask_threshold", "variants"}
# What a variant sets; a dataset with variants has no top-level classes, totals or protocol.
_VARIANT_FIELDS = {"classes", "totals", "protocol", "balance_seed"}


def _counts(value: Any, where: str) -> Counts:
    if not (isinstance(value, list) and len(value) == 2 and builtins.all(isinstance(v, int) and v >= 0 for v in value)):
        raise WMoEError(f"{REGISTRY_FILE}: {where} must be [normal, anomalous] non-negative integers, got {value!r}")
    return (value[0], value[1])


def _classes_and_totals(raw: dict[str, Any], where: str) -> tuple[dict[str, Counts | None], Counts]:
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
    return classes, totals


def _protocols(key: str, raw: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    """Variant name (None for a single protocol) -> its classes, totals, protocol and balance seed."""
    where = f"dataset {key!r}"
    variants = raw.get("variants")
    if variants is None:
        missing = {"classes", "protocol"} - set(raw)
        if missing:
            raise WMoEError(f"{REGISTRY_FILE}: {where}: missing fields {sorted(missing)}")
        variants, names = {None: raw}, {None: where}
    else:
        clash = {"classes", "totals", "protocol"} & set(raw)
        if clash or not isinstance(variants, dict) or not variants:
            raise WMoEError(f"{REGISTRY_FILE}: {where}: 'variants' must map names to protocols and replaces "
                            f"top-level {sorted(clash) or 'classes/protocol'}")
        names = {name: f"{where} variant {name!r}" for name in variants}
    out = {}
    for name, entry in variants.items():
        vwhere = names[name]
        if name is not None:
            unknown, missing = set(entry) - _VARIANT_FIELDS, {"classes", "protocol"} - set(entry)
            if unknown or missing:
                raise WMoEError(f"{REGISTRY_FILE}: {vwhere}: unknown fields {sorted(unknown)}, "
                                f"missing fields {sorted(missing)}")
        classes, totals = _classes_and_totals(entry, vwhere)
        seed = entry.get("balance_seed") if name is not None else None
        if seed is not None and not (isinstance(seed, int) and seed >= 0):
            raise WMoEError(f"{REGISTRY_FILE}: {vwhere}: balance_seed must be a non-negative integer")
        out[name] = {"classes": classes, "totals": totals, "protocol": entry["protocol"], "balance_seed": seed}
    return out


def _parse(key: str, raw: dict[str, Any]) -> dict[str | None, DatasetSpec]:
    """The spec of each protocol variant of one registry entry (key None when it has a single protocol)."""
    where = f"dataset {key!r}"
    unknown = set(raw) - _FIELDS
    missing = _FIELDS - _OPTIONAL - {"classes", "protocol"} - set(raw)
    if unknown or missing:
        raise WMoEError(
            f"{REGISTRY_FILE}: {where}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}"
        )
    if raw["domain"] not in ("industrial", "medical"):
        raise WMoEError(f"{REGISTRY_FILE}: {where}: domain must be industrial or medical")
    dl = raw["download"]
    if dl.get("kind") not in ("http", "manual"):
        raise WMoEError(f"{REGISTRY_FILE}: {where}: download.kind must be http or manual")
    files = tuple(FileSpec(url=f["url"], filename=f["filename"], sha256=f.get("sha256")) for f in dl.get("files") or ())
    if dl["kind"] == "http" and not files:
        raise WMoEError(f"{REGISTRY_FILE}: {where}: an http download needs files")
    if dl["kind"] == "manual" and not dl.get("manual"):
        raise WMoEError(f"{REGISTRY_FILE}: {where}: a manual download needs instructions")
    protocols = _protocols(key, raw)
    names = tuple(v for v in protocols if v is not None)
    return {
        variant: DatasetSpec(
            key=key,
            display_name=raw["display_name"],
            domain=raw["domain"],
            image_metrics=bool(raw["image_metrics"]),
            pixel_metrics=bool(raw["pixel_metrics"]),
            classes=p["classes"],
            licence=raw["licence"],
            homepage=raw["homepage"],
            protocol=p["protocol"],
            download=DownloadSpec(kind=dl["kind"], files=files, manual=dl.get("manual") or ""),
            citation=raw["citation"],
            totals=p["totals"],
            mask_threshold=int(raw.get("mask_threshold", 0)),
            variant=variant,
            variants=names,
            balance_seed=p["balance_seed"],
        )
        for variant, p in protocols.items()
    }


@functools.cache
def _load() -> dict[str, dict[str | None, DatasetSpec]]:
    with open(REGISTRY_FILE, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if list(raw) != list(KEYS):
        raise WMoEError(f"{REGISTRY_FILE}: keys must be {list(KEYS)} in Table 1 order, got {list(raw)}")
    return {key: _parse(key, raw[key]) for key in KEYS}


def keys() -> tuple[str, ...]:
    """The 14 dataset keys in the paper's Table 1 order."""
    return KEYS


def all() -> tuple[DatasetSpec, ...]:  # noqa: A001 - the registry API name
    """The spec of each dataset, in its default variant."""
    return tuple(next(iter(v.values())) for v in _load().values())


def get(key: str, variant: str | None = None) -> DatasetSpec:
    """The spec of dataset ``key`` in protocol ``variant`` (None: the default, the first listed)."""
    specs = _load()
    if key not in specs:
        raise WMoEError(f"unknown dataset {key!r}; known datasets: {', '.join(KEYS)}")
    protocols = specs[key]
    if variant is None:
        return next(iter(protocols.values()))
    if variant not in protocols:
        known = ", ".join(v for v in protocols if v) or "none (it has a single protocol)"
        raise WMoEError(f"{key}: unknown protocol variant {variant!r}; variants: {known}")
    return protocols[variant]


def check_custom_name(name: str) -> str:
    """``name`` if it can name a user's dataset: lower-case ``[a-z][a-z0-9_]*`` and no registry key."""
    if not CUSTOM_NAME.match(name):
        raise WMoEError(f"dataset name {name!r}: use lower-case letters, digits and '_', starting with a letter")
    if name in KEYS:
        raise WMoEError(f"dataset name {name!r} is a registry dataset; give your own dataset another --name")
    return name


def custom_spec(name: str, display_name: str, image_metrics: bool, pixel_metrics: bool,
                classes: list[str] | tuple[str, ...], protocol: str) -> DatasetSpec:
    """The spec of a user's own dataset: metric levels and classes from what was found, no expected counts."""
    check_custom_name(name)
    return DatasetSpec(
        key=name, display_name=display_name, domain=CUSTOM_DOMAIN, image_metrics=image_metrics,
        pixel_metrics=pixel_metrics, classes={c: None for c in classes}, licence="", homepage="",
        protocol=protocol, download=DownloadSpec(kind="manual", manual="the user's own data"), citation="",
    )
