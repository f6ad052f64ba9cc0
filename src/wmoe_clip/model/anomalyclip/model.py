"""AnomalyCLIP (Zhou et al., ICLR 2024) on the project's frozen backbone, as its public code computes it.

The interface is every method's (``model.base``): ``encode_image`` is the frozen part (cacheable),
``forward_features`` the learnable one, ``loss`` the training objective. What differs from WMoE-CLIP:

- text: the two object-agnostic prompts with deep tokens in text blocks 1..8 (``prompts.py``), the
  same features for every image and layer;
- layers: ``model.anomalyclip.layers`` of the backbone's feature layers (null: all), so it can share a
  backbone configuration with methods that use more layers;
- map of layer l: the abnormal channel of ``softmax(cos(patch, [t_n, t_a]) / τ)`` per patch, upsampled
  bilinearly to the input size; ``anomaly_map`` is the **sum** over the feature layers (their
  ``test.py``), so it ranges over [0, L];
- ``global_score`` and ``image_score`` are both the abnormal probability of the global token,
  ``softmax(cos(g, [t_n, t_a]) / τ)[1]``; the map does not enter the image score, in evaluation either;
- loss: ``losses.py``.

Where their backbone differs from the project's default (global token without ``ln_post``, positional
grid resized bilinearly, fp32), ``model.compat: anomalyclip`` restores it (docs/REPRODUCTION.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...config import RunConfig
from ...errors import WMoEError
from ..backbone import FrozenCLIP, autocast_disabled
from ..base import FrozenBackboneModel, ImageFeatures, ModelOutput
from ..losses import local_loss, loss_targets
from .losses import FOCAL_GAMMA, smoothed_focal_loss
from .prompts import AnomalyCLIPPrompts


class AnomalyCLIP(FrozenBackboneModel):
    def __init__(self, cfg: RunConfig, backbone: FrozenCLIP | None = None):
        super().__init__(cfg, backbone)
        m = cfg.model
        text_layers = len(self.backbone.clip.transformer.resblocks)
        if m.anomalyclip.deep_prompt_depth > text_layers:
            raise WMoEError(f"model.anomalyclip.deep_prompt_depth {m.anomalyclip.deep_prompt_depth} exceeds the "
                            f"{text_layers} text layers of {m.backbone}")
        self.prompts = AnomalyCLIPPrompts(m.anomalyclip, self.backbone.text_width, self.backbone.context_length)
        layers = m.anomalyclip.layers or m.feature_layers
        # Positions of its layers among the backbone's feature layers (patch_tokens' dimension 1).
        self.layer_index = [m.feature_layers.index(layer) for layer in layers]

    def encode_prompts(self) -> torch.Tensor:
        """L2-normalised text features (2,D): normal, abnormal."""
        embeddings = self.prompts(self.backbone.clip.token_embedding)[0]
        text = self.backbone.encode_text(embeddings, self.prompts.eot_index, truncate=self.cfg.model.truncate_text,
                                         deep_tokens=self.prompts.deep_tokens())
        return F.normalize(text.float(), dim=-1)

    def forward_features(self, feats: ImageFeatures, classes: list[str] | None = None) -> ModelOutput:
        """The prompts are object-agnostic: ``classes`` is not used."""
        m = self.cfg.model
        tau = m.anomalyclip.temperature
        device = self.prompts.context.device
        text = self.encode_prompts()
        with autocast_disabled(device):
            text = text.float()
            g = F.normalize(feats.global_token.to(device, torch.float32), dim=-1)
            patches = F.normalize(feats.patch_tokens[:, self.layer_index].to(device, torch.float32), dim=-1)
            b = g.shape[0]
            probs = (torch.einsum("blnd,cd->blnc", patches, text) / tau).softmax(dim=-1)[..., 1]
            gh, gw = self.backbone.grid
            layer_maps = F.interpolate(probs.reshape(b, -1, gh, gw), size=(m.image_size, m.image_size),
                                       mode="bilinear", align_corners=False)
            global_logits = g @ text.T / tau
            global_score = global_logits.softmax(dim=-1)[:, 1]
        return ModelOutput(layer_maps, layer_maps.sum(dim=1), global_score, global_score,
                          {"g": g, "text": text, "global_logits": global_logits})

    def loss(self, out: ModelOutput, labels: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """``global`` (CE of the global token), ``focal`` and ``dice`` (summed over layers) and ``total``."""
        with autocast_disabled(out.layer_maps.device):
            labels, masks = loss_targets(out.global_score, out.layer_maps, labels, masks, torch.long)
            terms = {"global": F.cross_entropy(out.aux["global_logits"].float(), labels)}
            terms["focal"], terms["dice"] = local_loss(out.layer_maps.float(), masks, FOCAL_GAMMA, smoothed_focal_loss)
            terms["total"] = terms["global"] + self.cfg.model.anomalyclip.local_weight * (terms["focal"] + terms["dice"])
        return terms
