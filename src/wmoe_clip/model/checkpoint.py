"""Checkpoints: the learnable state and the run config that made it, nothing of CLIP.

A checkpoint is a plain dict (``format``, ``format_version``, ``method``, ``variant``, ``config``,
``state``) that loads with ``torch.load(weights_only=True)``. The frozen backbone is rebuilt from the
stored config: from its weights file, or from ``model.backbone_seed`` when ``model.pretrained`` is null;
the model is the stored config's method (``registry``). ``variant`` is the run name (a WMoE-CLIP
variant, else the method's name).

Format 4 stores each method's settings in its section ``model.<method>`` (WMoE-CLIP's prompts, scores,
modules and loss weights under ``model.wmoe_clip``; AnomalyCLIP's temperature under
``model.anomalyclip``); formats 1 to 3 kept them directly under ``model`` and in a top-level ``loss``,
and are read by moving them there (``config.migrate_legacy_keys``). Format 3 adds ``method`` (also the
config's top-level key). Formats 1 and 2 were written before there was more than one method: they are
WMoE-CLIP's. Format 2 stores the config with ``model.init``, ``model.wcma.dwt_mode`` and
``model.precision``; a format-1 checkpoint has none of them: they are read as the behaviour of the code
that wrote it (:func:`_format_1_config`), so an old model computes what it computed when it was trained.

An optional ``source`` entry (``{"dataset": KEY, "data_meta_sha256": DIGEST}``, the training dataset
and the sha256 of its prepared ``meta.json``) lets an evaluation refuse the model's own training data
without its run record; files without it (older ones, imported ones) have an unknown source.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, RunConfig, config_from_dict, migrate_legacy_keys
from ..errors import WMoEError
from ..io import torch_load, torch_save
from .base import FrozenBackboneModel
from .registry import build_model, run_name

FORMAT = "wmoe-clip/checkpoint"
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
# The one method before format 3.
LEGACY_METHOD = "wmoe_clip"


def _format_1_config(config: dict[str, Any]) -> dict[str, Any]:
    """A format-1 stored config (in the layout of its time) with the keys it lacks set to what format-1
    code did: PyTorch's default initialisation, zero-padded Haar DWT, and the frozen encoders in bf16 on
    CUDA and fp32 elsewhere (its device rule, applied to the stored ``eval.device``, the device
    evaluation selects). Late format-1 configs may hold ``precision: auto``, which named that rule, or
    ``fp32``, which is kept."""
    config = copy.deepcopy(config)
    model = config.setdefault("model", {})
    model.setdefault("init", "default")
    model.setdefault("wcma", {}).setdefault("dwt_mode", "zero")
    if model.get("precision", "auto") == "auto":
        device = str(config.get("eval", {}).get("device", "auto"))
        on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        model["precision"] = "bf16" if on_cuda else "fp32"
    return config


def save_checkpoint(model: FrozenBackboneModel, path: str | Path, source: dict[str, str] | None = None) -> None:
    """Write the learnable state and config of ``model`` to ``path`` atomically; ``source``: the training
    dataset (``dataset``, ``data_meta_sha256``)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": model.cfg.method,
        "variant": run_name(model.cfg),
        "config": model.cfg.to_dict(),
        "state": {k: v.cpu() for k, v in model.learnable_state_dict().items()},
    }
    if source is not None:
        payload["source"] = dict(source)
    torch_save(payload, path)


def require_checkpoint_file(path: str | Path) -> Path:
    """``path`` as a Path when it is a file; else an error saying what is there instead."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise WMoEError(f"checkpoint {path} {what}; give the model.pt written by wmoe-clip train")
    return path


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> tuple[RunConfig, dict[str, torch.Tensor]]:
    """The run config and learnable state stored in ``path``; errors name the file and the problem."""
    path = require_checkpoint_file(path)
    payload = torch_load(path, "wmoe-clip checkpoint", "give the model.pt written by wmoe-clip train",
                         map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WMoEError(f"{path} is not a wmoe-clip checkpoint (no format {FORMAT!r})")
    version = payload.get("format_version")
    if version not in READABLE_VERSIONS:
        raise WMoEError(f"checkpoint {path} has format version {version}; "
                        f"this wmoe-clip reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    if not isinstance(payload.get("config"), dict) or not isinstance(payload.get("state"), dict):
        raise WMoEError(f"checkpoint {path} is damaged: it holds no config or no state; give the model.pt "
                        "written by wmoe-clip train")
    config = _format_1_config(payload["config"]) if version == 1 else payload["config"]
    method = payload.get("method", LEGACY_METHOD) if version >= 3 else LEGACY_METHOD
    if config.get("method", LEGACY_METHOD) != method:
        raise WMoEError(f"checkpoint {path} is damaged: it says method {method!r} but its config "
                        f"{config.get('method', LEGACY_METHOD)!r}")
    if version < 4:
        config = migrate_legacy_keys(config)
    try:
        cfg = config_from_dict(config, f"{path} (stored config)")
    except ConfigError as exc:
        raise WMoEError(f"checkpoint {path}: {exc}") from None
    return cfg, payload["state"]


def read_training_source(path: str | Path) -> dict[str, str] | None:
    """The training dataset recorded in checkpoint ``path`` (``dataset``, ``data_meta_sha256``), or None
    when the file records none (written before it was recorded, or imported)."""
    payload = torch_load(require_checkpoint_file(path), "wmoe-clip checkpoint",
                         "give the model.pt written by wmoe-clip train")
    source = payload.get("source") if isinstance(payload, dict) else None
    if source is None:
        return None
    if not isinstance(source, dict) or not isinstance(source.get("dataset"), str):
        raise WMoEError(f"checkpoint {path} is damaged: its training source {source!r} is not a dataset record")
    return source


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts, as ``key: a != b``."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(config_differences(va, vb, name + "."))
        elif va != vb:
            out.append(f"{name}: {va!r} != {vb!r}")
    return out


def _model_config_section(cfg: dict[str, Any]) -> dict[str, Any]:
    # Only the method and the model section decide which parameters exist and what they compute;
    # train/eval settings may differ freely.
    return {"method": cfg.get("method", LEGACY_METHOD), "model": cfg.get("model", {})}


def load_learnable_state(model: FrozenBackboneModel, state: dict[str, torch.Tensor], source: str,
                         source_config: dict[str, Any] | None = None) -> None:
    """Copy ``state`` into ``model``'s learnable parameters; any mismatch raises naming what differs.

    With ``source_config`` (the config that made ``state``) the model sections must also be equal:
    settings such as ``model.wmoe_clip.init`` or ``model.wmoe_clip.wcma.dwt_mode`` change no parameter
    shape but what the model computes.
    """
    params = dict(model.learnable_named_parameters())
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    shapes = sorted(f"{k}: {tuple(state[k].shape)} != {tuple(params[k].shape)}"
                    for k in set(params) & set(state) if state[k].shape != params[k].shape)
    if missing or unexpected or shapes:
        parts = []
        if source_config is not None:
            diff = config_differences(_model_config_section(source_config), _model_config_section(model.cfg.to_dict()))
            stored = config_from_dict(source_config)
            parts.append(f"checkpoint {stored.method} {run_name(stored)!r} vs model {model.cfg.method} "
                         f"{run_name(model.cfg)!r}")
            if diff:
                parts.append("config differs (checkpoint != model): " + "; ".join(diff))
        if missing:
            parts.append(f"missing in checkpoint: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
        if unexpected:
            parts.append(f"not in model: {', '.join(unexpected[:8])}" + (" ..." if len(unexpected) > 8 else ""))
        if shapes:
            parts.append("shape mismatch: " + "; ".join(shapes[:8]))
        raise WMoEError(f"checkpoint {source} does not fit this model: " + " | ".join(parts))
    if source_config is not None:
        diff = config_differences(_model_config_section(source_config), _model_config_section(model.cfg.to_dict()))
        if diff:
            raise WMoEError(f"checkpoint {source} was made with another model config than this model "
                            f"(checkpoint != model: {'; '.join(diff)}); rebuild the model from the checkpoint")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name].to(p.device, p.dtype))


def load_checkpoint(path: str | Path, map_location: Any = "cpu",
                    model: FrozenBackboneModel | None = None) -> FrozenBackboneModel:
    """Rebuild the model stored in ``path`` (or load it into ``model``, which must match it)."""
    cfg, state = read_checkpoint(path, map_location)
    if model is None:
        model = build_model(cfg)
        if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
            model = model.to(map_location)
    load_learnable_state(model, state, str(path), cfg.to_dict())
    model.eval()
    return model
