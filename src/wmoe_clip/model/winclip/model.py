"""WinCLIP (Jeong et al., CVPR 2023) in zero-shot mode: nothing learned.

- text: the compositional prompt ensemble of each image's class (``prompts``), one normal and one
  abnormal embedding;
- encoder: the backbone's outputs plus, for each window size k of ``window_sizes``, the embedding of
  every k×k window slid by ``window_stride`` patches (``windows``): the encoder pass of WinCLIP is its
  own (registry ``image_encoder``);
- score of an embedding: the abnormal channel of ``softmax(cos(e, [t_n, t_a]) / τ)``;
- map: per window size, each patch gets the harmonic mean of the scores of the windows holding it; the
  whole image's score on every patch is one more scale (``map_includes_image``); the scales are fused
  per patch (``scale_fusion``) and the patch map is upsampled to the image size (``upsample``); one
  layer, so ``anomaly_map`` is that map;
- image score: the whole image's score (``image_score: global``), or its mean with the maximum of the
  smoothed map.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ...config import RunConfig
from ...errors import WMoEError
from ..backbone import FrozenCLIP, autocast_disabled
from ..base import FrozenBackboneModel, ModelOutput
from .prompts import text_embeddings
from .windows import harmonic_aggregate, window_embeddings, window_indices


class WinCLIPFeatures(NamedTuple):
    """The backbone's outputs (``base.ImageFeatures``' fields) and the window embeddings (B,n_k,D) per window size."""

    global_token: torch.Tensor
    patch_tokens: torch.Tensor
    plain_tokens: torch.Tensor
    windows: tuple[torch.Tensor, ...]


class WinCLIP(FrozenBackboneModel):
    NEEDS_CLASSES = True

    def __init__(self, cfg: RunConfig, backbone: FrozenCLIP | None = None):
        super().__init__(cfg, backbone)
        self.settings = cfg.model.winclip
        s = self.settings
        self.windows = [window_indices(self.backbone.grid, k, s.window_stride) for k in s.window_sizes]
        # Text embeddings per (class name, device): fixed, so not state; not a buffer either.
        self._text: dict[tuple[str, str], torch.Tensor] = {}

    def text_features(self, cls: str, device: torch.device) -> torch.Tensor:
        """L2-normalised ensemble embeddings (2,D) of class ``cls``: normal, abnormal."""
        key = (cls, str(device))
        if key not in self._text:
            self._text[key] = text_embeddings(self.backbone, self.settings, cls, device, self.cfg.model.truncate_text)
        return self._text[key]

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> WinCLIPFeatures:
        base = self.backbone.encode_image(images)
        with self.backbone.autocast(images.device):
            tokens = self.backbone.embed_image(images)
        windows = tuple(window_embeddings(self.backbone, tokens, w) for w in self.windows)
        return WinCLIPFeatures(*base, windows)

    def scale(self) -> float:
        """``1/τ``: ``1 / model.winclip.temperature``, or CLIP's own ``logit_scale.exp()``."""
        t = self.settings.temperature
        return 1.0 / t if t is not None else float(self.backbone.clip.logit_scale.exp())

    def forward_features(self, feats: WinCLIPFeatures, classes: list[str] | None = None) -> ModelOutput:
        """``feats``: :meth:`encode_image`'s output; ``classes``: each image's class name."""
        b = feats.global_token.shape[0]
        if classes is None or len(classes) != b:
            raise WMoEError(f"winclip prompts with each image's class name: {b} image(s) need as many class names, "
                            f"got {'none' if classes is None else len(classes)}")
        if not hasattr(feats, "windows"):
            raise WMoEError("winclip scores window embeddings, which only its own encode_image computes (the feature "
                            "cache holds the backbone's outputs alone): evaluate it without the feature cache")
        s, m = self.settings, self.cfg.model
        device = self.backbone.clip.logit_scale.device
        gh, gw = self.backbone.grid
        with autocast_disabled(device):
            text = torch.stack([self.text_features(cls, device) for cls in classes])  # (B,2,D)
            scale = self.scale()

            def abnormal(embeddings: torch.Tensor) -> torch.Tensor:  # (B,n,D) → (B,n)
                e = F.normalize(embeddings.to(device, torch.float32), dim=-1)
                return (scale * torch.einsum("bnd,bcd->bnc", e, text)).softmax(dim=-1)[..., 1]

            global_score = abnormal(feats.global_token[:, None])[:, 0]
            maps = [global_score[:, None].expand(b, gh * gw)] if s.map_includes_image else []
            maps += [harmonic_aggregate(abnormal(w), idx, gh * gw) for w, idx in zip(feats.windows, self.windows)]
            stacked = torch.stack(maps)
            fused = len(maps) / stacked.reciprocal().sum(dim=0) if s.scale_fusion == "harmonic" else stacked.mean(dim=0)
            size = (m.image_size, m.image_size)
            corners = {} if s.upsample == "nearest" else {"align_corners": False}
            layer_maps = F.interpolate(fused.reshape(b, 1, gh, gw), size=size, mode=s.upsample, **corners)
            image_score = self.eval_image_score(global_score, layer_maps[:, 0])
        return ModelOutput(layer_maps, layer_maps[:, 0], global_score, image_score,
                           {"text": text, "scale_maps": stacked.transpose(0, 1).reshape(b, len(maps), gh, gw)})

    def eval_image_score(self, global_score: torch.Tensor, smoothed_map: torch.Tensor) -> torch.Tensor:
        if self.settings.image_score == "global":
            return global_score.float()
        return (global_score.float() + smoothed_map.flatten(1).amax(dim=1).float()) / 2
