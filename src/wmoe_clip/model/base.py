"""What every method on the frozen backbone shares: the encoder's output, the model's output, the
interface the engine calls, and the learnable state.

A method is a :class:`FrozenBackboneModel` subclass in its own folder, listed in ``registry``:

- ``encode_image(images) -> ImageFeatures``: the frozen, gradient-free part (the backbone's), so its
  output can be cached and fed back; ``model(images, classes) == model.forward_features(model.encode_image(images), classes)``;
- ``forward_features(feats, classes=None) -> ModelOutput``: ``classes`` are the images' class names, used
  only by methods with class-specific prompts;
- ``loss(out, labels, masks) -> dict`` with ``total`` (methods that train);
- ``eval_image_score(global_score, smoothed_map)``: the image score evaluation reports, from the
  global score and the Gaussian-smoothed anomaly map (default: the global score alone);
- ``diagnostics(aux)``: per-batch training diagnostics for the history (default: none), and
  ``DIAGNOSTIC_GROUPS``: history keys that gather per-component vectors among them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from ..config import RunConfig
from ..errors import WMoEError
from .backbone import FrozenCLIP
from .encoder_pass import backbone_configuration


class ImageFeatures(NamedTuple):
    """Output of the frozen image encoder: global token (B,D), patch tokens of the feature layers
    (B,L,N,D) (value–value ones where that path is on), and the last block's plain patch tokens (B,N,D)."""

    global_token: torch.Tensor
    patch_tokens: torch.Tensor
    plain_tokens: torch.Tensor


@dataclass
class ModelOutput:
    layer_maps: torch.Tensor  # (B,L,S,S) abnormal probability per layer at the input size
    anomaly_map: torch.Tensor  # (B,S,S) fused over layers by the method's rule, unsmoothed
    global_score: torch.Tensor  # (B,) s_g, the global token's abnormal score
    image_score: torch.Tensor  # (B,) the method's image score on the unsmoothed map (what training sees)
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class FrozenBackboneModel(nn.Module):
    """Base of the methods: the run config, the frozen backbone, and as learnable state every parameter
    that requires a gradient."""

    # History keys gathering per-component vectors of ``diagnostics`` (e.g. WMoE-CLIP's expert usage).
    DIAGNOSTIC_GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {}
    # Learnable modules a parameter summary lists even when a configuration switches them off.
    LEARNABLE_MODULES: ClassVar[tuple[str, ...]] = ()
    # Whether forward_features needs each image's class name (class-specific prompts).
    NEEDS_CLASSES: ClassVar[bool] = False

    def __init__(self, cfg: RunConfig, backbone: FrozenCLIP | None = None):
        super().__init__()
        self.cfg = cfg
        if backbone is not None:
            ours = backbone_configuration(cfg.model)
            differ = [f"{k}: {v!r} != {ours[k]!r}" for k, v in backbone.configuration.items() if ours[k] != v]
            if differ:
                raise WMoEError(f"a {cfg.method} model cannot share this backbone, whose configuration differs "
                                f"(backbone != model): {'; '.join(differ)}")
        self.backbone = backbone if backbone is not None else FrozenCLIP(cfg.model)

    def learnable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def learnable_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.learnable_named_parameters()]

    def learnable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.learnable_named_parameters()}

    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        return ImageFeatures(*self.backbone.encode_image(images))

    def forward(self, images: torch.Tensor, classes: list[str] | None = None) -> ModelOutput:
        return self.forward_features(self.encode_image(images), classes)

    def eval_image_score(self, global_score: torch.Tensor, smoothed_map: torch.Tensor) -> torch.Tensor:
        """The image score of evaluation and prediction, (B,), from ``global_score`` (B,) and the smoothed map (B,S,S)."""
        return global_score.float()

    def diagnostics(self, aux: dict[str, torch.Tensor]) -> dict[str, float | list[float]]:
        """Training diagnostics of one batch from ``ModelOutput.aux``, each a mean over its samples."""
        return {}
