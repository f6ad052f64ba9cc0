"""The methods on the shared frozen backbone: one folder of this package and one line below each.

A method's folder (``wmoe_clip/``, ``anomalyclip/``, ``clip/``) holds:

- ``settings.py`` (no torch): ``Settings``, the frozen dataclass of its run config section
  ``model.<name>``; optionally ``problems(cfg) -> list[str]`` (its value checks), ``VARIANTS`` (named
  overrides of its settings: WMoE-CLIP's Table 2 rows), ``OWN_PROTOCOL`` (the training source of each
  target in its own paper, for a workflow's ``protocol: own``) and ``LEGACY_KEYS`` (old run config keys that
  now sit in its section);
- its model, a ``base.FrozenBackboneModel`` subclass, named below as ``"module:Class"`` in the folder;
- ``configs/*.yaml``: the run configs shipped with it (``--config NAME``).

The engine (training, evaluation, prediction, checkpoints, the feature cache), the run config and the
workflow read nothing else about a method, so adding one touches its folder and this table. This
module imports no torch and nothing of the package but ``errors``: ``wmoe_clip.config`` imports it, and
the workflow reads it when Snakemake builds its DAG. Settings modules are imported on first use, model
classes and checkpoint importers too (they import torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import WMoEError


@dataclass(frozen=True)
class MethodSpec:
    name: str  # registry key = the run config's `method` and its section `model.<name>`
    display_name: str  # "WMoE-CLIP", "AnomalyCLIP", "CLIP"
    package: str  # its folder: a package relative to wmoe_clip.model (".wmoe_clip") or an absolute one
    trains: bool  # False: no training job; evaluated from its run config alone
    model: str  # its FrozenBackboneModel subclass, "module:Class" in the package
    paper_key: str | None = None  # its column in config/paper_results.yaml table1.methods, if any
    # "module:function(cfg, path) -> model" in the package: the model of a run config holding the
    # authors' released checkpoint (`wmoe-clip import-checkpoint --from NAME`), if the method has one;
    # it checks the file before building anything.
    importer: str | None = None
    # None: the model's ``encode_image`` returns the backbone's outputs, so it shares an encoder pass (and
    # the feature cache) with every model of the same backbone configuration. A name: its encode_image
    # adds outputs of its own (WinCLIP's window embeddings); only models of that name share its pass,
    # and the feature cache, which holds the backbone's outputs alone, does not serve it.
    image_encoder: str | None = None

    def _import(self, module: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{module}", __package__)

    def _resolve(self, target: str) -> Any:
        module, _, attribute = target.partition(":")
        return getattr(self._import(module), attribute)

    @property
    def settings(self) -> ModuleType:
        """Its ``settings`` module (torch-free)."""
        return self._import("settings")

    @property
    def Settings(self) -> type:  # noqa: N802 - the settings module's class
        return self.settings.Settings

    @property
    def variants(self) -> dict[str, dict[str, Any]]:
        """Named overrides of its settings (WMoE-CLIP's Table 2 rows); a trained run of a method with
        variants is named by its variant, any other by the method's name."""
        return getattr(self.settings, "VARIANTS", {})

    @property
    def own_protocol(self) -> dict[str, str]:
        """The training source of each target in the method's own paper (``default``: every other target),
        its settings' ``OWN_PROTOCOL``; empty when it has none."""
        return getattr(self.settings, "OWN_PROTOCOL", {})

    @property
    def legacy_keys(self) -> dict[str, str]:
        """Old run config keys (dotted) that now sit in its section: old key -> key in ``model.<name>``."""
        return getattr(self.settings, "LEGACY_KEYS", {})

    def problems(self, cfg: Any) -> list[str]:
        """The method's value checks of ``cfg`` (a run config of this method)."""
        check = getattr(self.settings, "problems", None)
        return list(check(cfg)) if check is not None else []

    @property
    def configs_dir(self) -> Path:
        """The folder of its shipped run configs."""
        return Path(self.settings.__file__).parent / "configs"

    @property
    def model_class(self) -> type:
        return self._resolve(self.model)

    def import_checkpoint(self, cfg: Any, path: Any) -> Any:
        if self.importer is None:
            raise WMoEError(f"method {self.name} has no checkpoint importer; --from takes {', '.join(importers())}")
        return self._resolve(self.importer)(cfg, path)


# The source segment of the results layout for a method that does not train: eval/none/{target}/{method}/seed0.json.
UNTRAINED_SOURCE = "none"

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("wmoe_clip", "WMoE-CLIP", ".wmoe_clip", trains=True, model="model:WMoECLIP", paper_key="wmoe_clip"),
        MethodSpec("anomalyclip", "AnomalyCLIP", ".anomalyclip", trains=True, model="model:AnomalyCLIP",
                   paper_key="anomalyclip", importer="checkpoint:import_anomalyclip"),
        MethodSpec("clip", "CLIP", ".clip", trains=False, model="model:CLIPBaseline"),
        MethodSpec("winclip", "WinCLIP", ".winclip", trains=False, model="model:WinCLIP", paper_key="winclip",
                   image_encoder="winclip"),
    )
}


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def importers() -> tuple[str, ...]:
    """Methods whose released checkpoints ``import-checkpoint`` converts."""
    return tuple(name for name, spec in METHODS.items() if spec.importer)


def get(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise WMoEError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def run_name(cfg: Any) -> str:
    """The name of a run of the run config ``cfg`` in the results layout (``train/{source}/{run}/``): its
    variant for a method with variants, the method's name otherwise."""
    return cfg.variant if get(cfg.method).variants else cfg.method


def check_variant(method: str, variant: str | None) -> None:
    """A variant is given only to a method that has it."""
    spec = get(method)
    if variant is not None and variant not in spec.variants:
        have = f"its variants are {', '.join(spec.variants)}" if spec.variants else "it has no variants"
        raise WMoEError(f"--variant {variant}: the config's method is {method}, and {have}")


def variants_help() -> str:
    """The variants of each method that has them, for help texts: "wmoe_clip: base, ctds, …"."""
    return "; ".join(f"{name}: {', '.join(spec.variants)}" for name, spec in METHODS.items() if spec.variants)


def build_model(cfg: Any, backbone: Any = None) -> Any:
    """The model of the run config ``cfg`` (variant already applied); ``backbone`` (a ``FrozenCLIP`` of the
    same backbone configuration) is shared instead of built, so several models can hold one CLIP."""
    return get(cfg.method).model_class(cfg, backbone=backbone)
