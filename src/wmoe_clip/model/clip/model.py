"""Plain CLIP as a zero-shot anomaly detector, with nothing learned (AnomalyCLIP's Table 1 "CLIP" row).

- text: "a photo of a normal {cls}" and "a photo of an anomalous {cls}" (``model.clip``), the class name
  with "_" as a space, tokenised whole, features at the EOT token, L2-normalised; computed once per
  class name and device;
- map: the abnormal channel of ``softmax(s · cos(plain, [t_n, t_a]))`` per patch, where ``plain`` are
  the last block's ordinary patch tokens through ``ln_post`` and ``proj`` (no value–value path) and
  ``s`` is CLIP's own learned logit scale (100 for OpenAI's weights) unless ``model.clip.temperature``
  sets ``1/τ``; upsampled bilinearly to the input size; one layer, so ``anomaly_map`` is that map;
- image score: the same softmax on the global token, alone (no map term), in evaluation too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...config import RunConfig
from ...errors import WMoEError
from ..backbone import FrozenCLIP, autocast_disabled
from ..base import FrozenBackboneModel, ImageFeatures, ModelOutput


class CLIPBaseline(FrozenBackboneModel):
    NEEDS_CLASSES = True

    def __init__(self, cfg: RunConfig, backbone: FrozenCLIP | None = None):
        super().__init__(cfg, backbone)
        # Text features per (class name, device): fixed, so not state; not a buffer either.
        self._text: dict[tuple[str, str], torch.Tensor] = {}

    def prompts(self, cls: str) -> tuple[str, str]:
        """The normal and abnormal sentences of class ``cls``."""
        c = self.cfg.model.clip
        name = cls.replace("_", " ")
        return c.normal_template.format(cls=name), c.abnormal_template.format(cls=name)

    def token_ids(self, cls: str) -> torch.Tensor:
        """Token ids (2,T) of the two sentences, ``<sot> … <eot>`` padded with 0."""
        import open_clip

        return open_clip.tokenize(list(self.prompts(cls)), context_length=self.backbone.context_length)

    @torch.no_grad()
    def text_features(self, cls: str, device: torch.device) -> torch.Tensor:
        """L2-normalised text features (2,D) of class ``cls``: normal, abnormal."""
        key = (cls, str(device))
        if key not in self._text:
            ids = self.token_ids(cls).to(device)
            text = self.backbone.encode_text(self.backbone.embed_tokens(ids), ids.argmax(dim=-1),
                                             truncate=self.cfg.model.truncate_text)
            self._text[key] = F.normalize(text.float(), dim=-1)
        return self._text[key]

    def logit_scale(self) -> float:
        """``1/τ``: CLIP's own ``logit_scale.exp()``, or ``1 / model.clip.temperature``."""
        temperature = self.cfg.model.clip.temperature
        return 1.0 / temperature if temperature is not None else float(self.backbone.clip.logit_scale.exp())

    def forward_features(self, feats: ImageFeatures, classes: list[str] | None = None) -> ModelOutput:
        """``classes``: the class name of each image, which its prompts name."""
        b = feats.global_token.shape[0]
        if classes is None or len(classes) != b:
            raise WMoEError(f"the clip method prompts with each image's class name: {b} image(s) need as many "
                            f"class names, got {'none' if classes is None else len(classes)}")
        device = self.backbone.clip.logit_scale.device
        m = self.cfg.model
        with autocast_disabled(device):
            text = torch.stack([self.text_features(cls, device) for cls in classes])  # (B,2,D)
            scale = self.logit_scale()
            plain = F.normalize(feats.plain_tokens.to(device, torch.float32), dim=-1)
            probs = (scale * torch.einsum("bnd,bcd->bnc", plain, text)).softmax(dim=-1)[..., 1]
            gh, gw = self.backbone.grid
            layer_maps = F.interpolate(probs.reshape(b, 1, gh, gw), size=(m.image_size, m.image_size),
                                       mode="bilinear", align_corners=False)
            g = F.normalize(feats.global_token.to(device, torch.float32), dim=-1)
            global_score = (scale * torch.einsum("bd,bcd->bc", g, text)).softmax(dim=-1)[:, 1]
        return ModelOutput(layer_maps, layer_maps[:, 0], global_score, global_score, {"g": g, "text": text})
