"""What the frozen image encoder's outputs depend on, and the short name of a pass through it.

Models whose run configs agree on :func:`encoder_pass_key` can be scored from one pass of a target's
images through one ``FrozenCLIP``; the feature cache is keyed by the same backbone configuration. The
module imports no torch: the protocol (``wmoe_clip.plan``) reads it to make one evaluate job per target
and :func:`encoder_passes` group.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from ..config import ModelConfig, RunConfig
from .registry import get


def weights_identity(pretrained: str | None) -> Any:
    """``model.pretrained`` as something that changes when the weights do: a file's path, size and mtime."""
    if pretrained is None or not Path(pretrained).is_file():
        return pretrained
    st = Path(pretrained).stat()
    return {"path": str(Path(pretrained).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def backbone_configuration(cfg: ModelConfig) -> dict[str, Any]:
    """Everything the frozen image encoder's outputs depend on: models whose configurations are equal can
    share one ``FrozenCLIP`` and one feature cache."""
    return {
        "backbone": cfg.backbone,
        "pretrained": weights_identity(cfg.pretrained),
        "backbone_seed": cfg.backbone_seed if cfg.pretrained is None else None,
        "image_size": cfg.image_size,
        "feature_layers": list(cfg.feature_layers),
        "vv_attention": cfg.vv_attention,
        "vv_start_layer": cfg.vv_start_layer,
        "global_token_ln_post": cfg.global_token_ln_post,
        "pos_embed_interpolation": cfg.pos_embed_interpolation,
        "precision": cfg.precision,
    }


def encoder_pass_key(cfg: RunConfig) -> dict[str, Any]:
    """What models must share to be scored from one pass of the frozen encoder: its configuration, what
    the method's ``encode_image`` adds to it (registry ``image_encoder``), the mask convention, and the
    batches and device of the pass, so that every model sees exactly the features and batches it would
    see alone."""
    own = get(cfg.method).image_encoder
    # Only where set, so that the keys (and digests) of the methods on the backbone's outputs stay as they were.
    return {**backbone_configuration(cfg.model), **({"image_encoder": own} if own else {}),
            "mask_interpolation": cfg.data.mask_interpolation, "batch_size": cfg.eval.batch_size,
            "device": cfg.eval.device}


def backbone_digest(cfg: RunConfig) -> str:
    """A short stable name (12 hex digits) of ``cfg``'s encoder pass: the workflow's evaluate jobs are
    named by it. The weights enter as configured (``model.pretrained``), not by the file's size and
    time, so that the name is the same before and after the weights are downloaded."""
    key = {**encoder_pass_key(cfg), "pretrained": cfg.model.pretrained}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


T = TypeVar("T")


def encoder_passes(items: Iterable[T], config: Callable[[T], RunConfig]) -> dict[str, list[T]]:
    """``items`` grouped by the :func:`backbone_digest` of their run configs, groups and members in the
    order they first appear: each group is scored from one pass of a target's images. The evaluation
    engine groups its models so, and the protocol its evaluate jobs."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(backbone_digest(config(item)), []).append(item)
    return groups
