"""The methods on the shared frozen backbone: one entry per method folder of this package.

A method is a folder (``wmoe_clip/``, ``anomalyclip/``, ``clip/``) holding a model class derived from
``base.FrozenBackboneModel``, and one :class:`MethodSpec` below. The engine (training, evaluation,
prediction, checkpoints, the feature cache) and the workflow read nothing else about a method, so
adding one touches its folder and this table.

The model class and a checkpoint importer are named as ``"module:attribute"`` and imported on first
use: the workflow reads the table when Snakemake builds its DAG, which must not import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ..config import VARIANTS, RunConfig
from ..errors import WMoEError


def _resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module, __package__), attribute)


@dataclass(frozen=True)
class MethodSpec:
    name: str  # registry key, = RunConfig.method
    display_name: str  # "WMoE-CLIP", "AnomalyCLIP", "CLIP"
    model: str  # its FrozenBackboneModel subclass, "module:Class" relative to this package
    trains: bool  # False: no training job; evaluated from its run config alone
    paper_key: str | None  # its column in config/paper_results.yaml table1.methods, if any
    # Named configurations of the method (WMoE-CLIP's Table 2 rows); a trained run of such a method
    # is named by its variant, any other by the method's name.
    variants: tuple[str, ...] = ()
    # "module:function(cfg, path) -> model": the model of a run config holding the authors' released
    # checkpoint (`wmoe-clip import-checkpoint --from NAME`), if the method has one; it checks the file
    # before building anything.
    importer: str | None = None
    # None: the model's ``encode_image`` returns the backbone's outputs, so it shares an encoder pass (and
    # the feature cache) with every model of the same backbone configuration. A name: its encode_image
    # adds outputs of its own (WinCLIP's window embeddings); only models of that name share its pass,
    # and the feature cache, which holds the backbone's outputs alone, does not serve it.
    image_encoder: str | None = None

    @property
    def model_class(self) -> type:
        return _resolve(self.model)

    def import_checkpoint(self, cfg: RunConfig, path):
        if self.importer is None:
            raise WMoEError(f"method {self.name} has no checkpoint importer; --from takes {', '.join(importers())}")
        return _resolve(self.importer)(cfg, path)


# The source segment of the results layout for a method that does not train: eval/none/{target}/{method}/seed0.json.
UNTRAINED_SOURCE = "none"

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("wmoe_clip", "WMoE-CLIP", ".wmoe_clip:WMoECLIP", trains=True, paper_key="wmoe_clip",
                   variants=tuple(VARIANTS)),
        MethodSpec("anomalyclip", "AnomalyCLIP", ".anomalyclip:AnomalyCLIP", trains=True, paper_key="anomalyclip",
                   importer=".anomalyclip:import_anomalyclip"),
        MethodSpec("clip", "CLIP", ".clip:CLIPBaseline", trains=False, paper_key=None),
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


def run_name(cfg: RunConfig) -> str:
    """The name of a run of ``cfg`` in the results layout (``train/{source}/{run}/``): its Table 2
    variant for a method with variants, the method's name otherwise."""
    return cfg.variant if get(cfg.method).variants else cfg.method


def check_variant(method: str, variant: str | None) -> None:
    """A variant is given only to a method that has it."""
    spec = get(method)
    if variant is not None and variant not in spec.variants:
        have = f"its variants are {', '.join(spec.variants)}" if spec.variants else "it has no variants"
        raise WMoEError(f"--variant {variant}: the config's method is {method}, and {have}")


def build_model(cfg: RunConfig, backbone=None):
    """The model of ``cfg.method`` (variant switches already applied); ``backbone`` (a ``FrozenCLIP`` of the
    same backbone configuration) is shared instead of built, so several models can hold one CLIP."""
    return get(cfg.method).model_class(cfg, backbone=backbone)
