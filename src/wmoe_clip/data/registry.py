"""The dataset registry: one declarative entry per benchmark, read from ``registry.yaml``.

Everything that differs between the datasets and is data rather than logic lives here: display
name, domain, which metric levels apply, the class list with the expected zero-shot test counts,
sources with checksums, licence, what the test set is and, where a login stands in the way, what
the user must download by hand. The registry's keys, in the file's order (the paper's Table 1
order), are the dataset names everywhere: the CLI, the workflow config and the report derive them
from here, and each key's layout, converter and synthetic writer live in the module
``wmoe_clip.data.datasets.<key>``.

A dataset published in several *protocols* (KSDD2, DAGM) lists them, each with its own classes,
counts and description; ``get(key, protocol)`` returns the spec of one (the first, the project
default, when ``protocol`` is None). A user's own dataset (``wmoe-clip prepare folder``) is no
registry entry: ``custom_spec`` derives its spec from what was found, and ``check_custom_name``
keeps its name apart from the registry keys.
"""

from __future__ import annotations

import builtins
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import WMoEError

REGISTRY_FILE = Path(__file__).with_name("registry.yaml")

Counts = tuple[int, int]

CUSTOM_DOMAIN = "custom"
# The DATASET of `wmoe-clip prepare` and `synth` that stands for a user's own dataset: no registry key.
CUSTOM_COMMAND = "folder"
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
    # What the test set is (files, split, mask convention), in words.
    description: str
    download: DownloadSpec
    citation: str
    # Dataset-wide expected test (normal, anomalous); equals the sum of ``classes`` when all are known.
    totals: Counts = (0, 0)
    # A mask pixel is foreground iff its value is > mask_threshold (0 everywhere but JPEG masks).
    mask_threshold: int = 0
    # The protocol this spec describes (None for a dataset with one protocol) and all of them.
    protocol: str | None = None
    protocols: tuple[str, ...] = ()
    # Seed of a protocol's balanced random draw (KSDD2 official-balanced), recorded in prepare.json.
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
    "homepage", "description", "download", "citation", "mask_threshold", "protocols",
}
_OPTIONAL = {"totals", "mask_threshold", "protocols"}
# What a protocol sets; a dataset with protocols has no top-level classes, totals or description.
_PROTOCOL_FIELDS = {"classes", "totals", "description", "balance_seed"}


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
    """Protocol name (None for a single protocol) -> its classes, totals, description and balance seed."""
    where = f"dataset {key!r}"
    protocols = raw.get("protocols")
    if protocols is None:
        missing = {"classes", "description"} - set(raw)
        if missing:
            raise WMoEError(f"{REGISTRY_FILE}: {where}: missing fields {sorted(missing)}")
        protocols, names = {None: raw}, {None: where}
    else:
        clash = {"classes", "totals", "description"} & set(raw)
        if clash or not isinstance(protocols, dict) or not protocols:
            raise WMoEError(f"{REGISTRY_FILE}: {where}: 'protocols' must map names to protocols and replaces "
                            f"top-level {sorted(clash) or 'classes/description'}")
        names = {name: f"{where} protocol {name!r}" for name in protocols}
    out = {}
    for name, entry in protocols.items():
        pwhere = names[name]
        if name is not None:
            unknown, missing = set(entry) - _PROTOCOL_FIELDS, {"classes", "description"} - set(entry)
            if unknown or missing:
                raise WMoEError(f"{REGISTRY_FILE}: {pwhere}: unknown fields {sorted(unknown)}, "
                                f"missing fields {sorted(missing)}")
        classes, totals = _classes_and_totals(entry, pwhere)
        seed = entry.get("balance_seed") if name is not None else None
        if seed is not None and not (isinstance(seed, int) and seed >= 0):
            raise WMoEError(f"{REGISTRY_FILE}: {pwhere}: balance_seed must be a non-negative integer")
        out[name] = {"classes": classes, "totals": totals, "description": entry["description"], "balance_seed": seed}
    return out


def _parse(key: str, raw: dict[str, Any]) -> dict[str | None, DatasetSpec]:
    """The spec of each protocol of one registry entry (key None when it has a single protocol)."""
    where = f"dataset {key!r}"
    unknown = set(raw) - _FIELDS
    missing = _FIELDS - _OPTIONAL - {"classes", "description"} - set(raw)
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
    names = tuple(p for p in protocols if p is not None)
    return {
        protocol: DatasetSpec(
            key=key,
            display_name=raw["display_name"],
            domain=raw["domain"],
            image_metrics=bool(raw["image_metrics"]),
            pixel_metrics=bool(raw["pixel_metrics"]),
            classes=p["classes"],
            licence=raw["licence"],
            homepage=raw["homepage"],
            description=p["description"],
            download=DownloadSpec(kind=dl["kind"], files=files, manual=dl.get("manual") or ""),
            citation=raw["citation"],
            totals=p["totals"],
            mask_threshold=int(raw.get("mask_threshold", 0)),
            protocol=protocol,
            protocols=names,
            balance_seed=p["balance_seed"],
        )
        for protocol, p in protocols.items()
    }


@functools.cache
def _load() -> dict[str, dict[str | None, DatasetSpec]]:
    with open(REGISTRY_FILE, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict) or not raw:
        raise WMoEError(f"{REGISTRY_FILE}: expected a mapping of dataset keys to entries")
    for key in raw:
        if not (isinstance(key, str) and CUSTOM_NAME.match(key)) or key == CUSTOM_COMMAND:
            raise WMoEError(f"{REGISTRY_FILE}: dataset key {key!r}: use lower-case letters, digits and '_', "
                            f"starting with a letter, and not {CUSTOM_COMMAND!r} (the key names the module "
                            "wmoe_clip.data.datasets.<key>)")
    return {key: _parse(key, entry) for key, entry in raw.items()}


def keys() -> tuple[str, ...]:
    """The dataset keys in the registry's order (the paper's Table 1 order)."""
    return tuple(_load())


def all() -> tuple[DatasetSpec, ...]:  # noqa: A001 - the registry API name
    """The spec of each dataset, in its default protocol."""
    return tuple(next(iter(v.values())) for v in _load().values())


def check_keys(names: Iterable[str], where: str) -> None:
    """Raise a one-line WMoEError naming ``where`` unless every name is a registry key."""
    known = keys()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise WMoEError(f"{where}: unknown dataset{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(repr, unknown))}; known datasets ({REGISTRY_FILE.name}): {', '.join(known)}")


def get(key: str, protocol: str | None = None) -> DatasetSpec:
    """The spec of dataset ``key`` in ``protocol`` (None: the default, the first listed)."""
    specs = _load()
    if key not in specs:
        raise WMoEError(f"unknown dataset {key!r}; known datasets: {', '.join(specs)}")
    protocols = specs[key]
    if protocol is None:
        return next(iter(protocols.values()))
    if protocol not in protocols:
        known = ", ".join(p for p in protocols if p) or "none (it has a single protocol)"
        raise WMoEError(f"{key}: unknown protocol {protocol!r}; protocols: {known}")
    return protocols[protocol]


def check_custom_name(name: str, where: str = "--name") -> str:
    """``name`` if it can name a user's dataset: lower-case ``[a-z][a-z0-9_]*`` and no registry key.

    ``where`` names the setting in the one-line error (``--name``, or a workflow config key).
    """
    if not CUSTOM_NAME.match(name):
        raise WMoEError(f"{where}: dataset name {name!r}: use lower-case letters, digits and '_', "
                        "starting with a letter")
    if name in keys():
        raise WMoEError(f"{where}: dataset name {name!r} is a registry dataset; give your own dataset another name")
    return name


def custom_spec(name: str, display_name: str, image_metrics: bool, pixel_metrics: bool,
                classes: list[str] | tuple[str, ...], description: str) -> DatasetSpec:
    """The spec of a user's own dataset: metric levels and classes from what was found, no expected counts."""
    check_custom_name(name)
    return DatasetSpec(
        key=name, display_name=display_name, domain=CUSTOM_DOMAIN, image_metrics=image_metrics,
        pixel_metrics=pixel_metrics, classes={c: None for c in classes}, licence="", homepage="",
        description=description, download=DownloadSpec(kind="manual", manual="the user's own data"), citation="",
    )
