"""Where a model to evaluate or apply comes from: a checkpoint (a training's ``model.pt``, or one written by
``import-checkpoint``), or the run config of a method that does not train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig, load_config, resolve_config_path
from ..errors import WMoEError
from . import registry
from .base import FrozenBackboneModel
from .checkpoint import load_learnable_state, read_checkpoint, require_checkpoint_file


def read_model_source(checkpoint: str | Path | None,
                      config: str | Path | None) -> tuple[RunConfig, dict[str, torch.Tensor] | None, Path]:
    """``(cfg, learned state or None, file)`` of a checkpoint, or of the run config of a method that does
    not train (refused for one that does)."""
    if (checkpoint is None) == (config is None):
        raise WMoEError("give one of --checkpoint (the model.pt of a training, or of import-checkpoint) and "
                        "--config (the run config of a method that does not train)")
    if checkpoint is not None:
        path = require_checkpoint_file(checkpoint)
        return (*read_checkpoint(path), path)
    path = resolve_config_path(config)
    cfg = load_config(path)
    if registry.get(cfg.method).trains:
        raise WMoEError(f"--config {config}: method {cfg.method} learns its parameters; give the model.pt of its "
                        "training (wmoe-clip train) or of wmoe-clip import-checkpoint with --checkpoint")
    return cfg, None, path


def build_from_source(cfg: RunConfig, state: dict[str, torch.Tensor] | None, path: Path,
                      backbone: Any = None) -> FrozenBackboneModel:
    """The model of :func:`read_model_source`'s result, in eval mode (on ``backbone``'s device if given)."""
    model = registry.build_model(cfg, backbone=backbone)
    if state is not None:
        load_learnable_state(model, state, str(path), cfg.to_dict())
    return model.eval()


def load_model(checkpoint: str | Path | None, config: str | Path | None) -> tuple[FrozenBackboneModel, Path]:
    """``(model, file)``: the model of a checkpoint, or of the run config of a method that does not train,
    in eval mode on the CPU, and the file it came from."""
    cfg, state, path = read_model_source(checkpoint, config)
    return build_from_source(cfg, state, path), path
