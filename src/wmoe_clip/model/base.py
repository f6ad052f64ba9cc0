"""What every method on the frozen backbone shares: the image encoder's output and the learnable state.

A method is an ``nn.Module`` with a ``FrozenCLIP`` as ``self.backbone`` and learnable modules beside
it. ``model(images) == model.forward_features(model.encode_image(images))``; ``encode_image`` is the
frozen, gradient-free part, so its output can be cached and fed back.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..config import RunConfig
from .backbone import FrozenCLIP


class ImageFeatures(NamedTuple):
    """Output of the frozen image encoder: global token (B,D) and patch tokens (B,L,N,D)."""

    global_token: torch.Tensor
    patch_tokens: torch.Tensor


class FrozenBackboneModel(nn.Module):
    """Base of the methods: the run config, the frozen backbone, and as learnable state every parameter
    that requires a gradient."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = FrozenCLIP(cfg.model)

    def learnable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def learnable_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.learnable_named_parameters()]

    def learnable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.learnable_named_parameters()}

    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        return ImageFeatures(*self.backbone.encode_image(images))

    def forward(self, images: torch.Tensor):
        return self.forward_features(self.encode_image(images))
