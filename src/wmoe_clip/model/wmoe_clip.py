"""WMoE-CLIP: the frozen CLIP backbone and the three learnable modules, switched per Table 2 row.

``model(images) == model.forward_features(model.encode_image(images))``. ``encode_image`` is the
frozen, gradient-free part, so its output can be cached (fp16 is fine) and fed back.

Design details beyond METHOD.md (see docs/REPRODUCTION.md):
- ``g`` and the patch tokens are L2-normalised before CTDS, WCMA and SA-MoE: CLIP's image–text
  geometry is cosine, and the frozen layers 6–24 differ in token norm by large factors.
- Maps and scores are computed in float32 with autocast off, whatever the caller's precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..config import RunConfig
from . import losses
from .backbone import autocast_disabled
from .base import FrozenBackboneModel, ImageFeatures
from .ctds import CTDS
from .prompts import PromptLearner
from .sa_moe import SAMoE
from .wcma import WCMA

LEARNABLE_MODULES = ("prompts", "ctds", "wcma", "sa_moe")


@dataclass
class WMoEOutput:
    layer_maps: torch.Tensor  # (B,L,S,S) abnormal probability per layer at the input size
    anomaly_map: torch.Tensor  # (B,S,S) fused over layers (WMoE-CLIP: mean; AnomalyCLIP: sum), unsmoothed
    global_score: torch.Tensor  # (B,) s_g
    image_score: torch.Tensor  # (B,) WMoE-CLIP: alpha·s_g + (1 − alpha)·max(anomaly_map); AnomalyCLIP: s_g
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class WMoECLIP(FrozenBackboneModel):
    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        m = cfg.model
        dim, width, layers = self.backbone.embed_dim, self.backbone.text_width, len(m.feature_layers)
        self.prompts = PromptLearner(m.prompt_normal, m.prompt_abnormal, m.prompt_length, width,
                                     self.backbone.context_length)
        self.ctds = CTDS(dim, m.ctds.latent_dim, m.ctds.decoder_hidden, width, m.ctds.sample_at_eval) \
            if m.ctds.enabled else None
        self.wcma = WCMA(layers, dim, m.wcma.reduction, m.wcma.attn_dim, m.wcma.heads, m.wcma.residual,
                         m.wcma.per_layer) if m.wcma.enabled else None
        self.sa_moe = SAMoE(layers, dim, m.sa_moe.adapter_dim, m.sa_moe.num_experts, m.sa_moe.top_k,
                            m.sa_moe.expert_hidden) if m.sa_moe.enabled else None

    @property
    def variant(self) -> str:
        return self.cfg.variant

    def encode_prompts(self, shift: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised text features ``T`` (B,2,D); B = 1 when the prompts are shared (no CTDS)."""
        embeddings = self.prompts(self.backbone.clip.token_embedding, shift)
        b, c, t, w = embeddings.shape
        eot = self.prompts.eot_index.repeat(b)
        text = self.backbone.encode_text(embeddings.reshape(b * c, t, w), eot, truncate=self.cfg.model.truncate_text)
        return F.normalize(text.reshape(b, c, -1), dim=-1)

    def forward_features(self, feats: ImageFeatures) -> WMoEOutput:
        m = self.cfg.model
        param = self.prompts.context
        g = F.normalize(feats.global_token.to(param.device, torch.float32), dim=-1)
        patches = F.normalize(feats.patch_tokens.to(param.device, torch.float32), dim=-1)
        b = g.shape[0]
        aux: dict[str, torch.Tensor] = {"g": g}

        shift = None
        if self.ctds is not None:
            vae = self.ctds(g)
            shift = vae.pop("prompt_shift")
            aux.update(vae)
        text = self.encode_prompts(shift).expand(b, -1, -1)
        refined = self.wcma(text, patches, self.backbone.grid) if self.wcma is not None else None

        g_prime = g
        if self.sa_moe is not None:
            moe = self.sa_moe(patches)
            g_prime = g + moe.pop("delta").float()
            aux.update(moe)

        with autocast_disabled(g.device):
            text = text.float()
            # Per-layer text (B,L,2,D): WCMA's refinement, or the same T for every layer.
            layer_text = refined.float() if refined is not None else text.unsqueeze(1).expand(-1, patches.shape[1], -1, -1)
            logits = torch.einsum("blnd,blcd->blnc", patches, layer_text) / m.temperature
            probs = logits.softmax(dim=-1)[..., 1]
            gh, gw = self.backbone.grid
            layer_maps = F.interpolate(probs.reshape(b, -1, gh, gw), size=(m.image_size, m.image_size),
                                       mode="bilinear", align_corners=False)
            anomaly_map = layer_maps.mean(dim=1)
            global_logits = torch.einsum("bd,bcd->bc", F.normalize(g_prime.float(), dim=-1), text) / m.temperature
            global_logit = global_logits[:, 1] - global_logits[:, 0]
            global_score = torch.sigmoid(global_logit)
            image_score = m.alpha * global_score + (1 - m.alpha) * anomaly_map.flatten(1).amax(dim=1)
        aux["global_logit"] = global_logit
        aux["text"] = text
        if refined is not None:
            aux["refined_text"] = refined
        return WMoEOutput(layer_maps, anomaly_map, global_score, image_score, aux)

    def loss(self, out: WMoEOutput, labels: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every loss term and ``total``; a term of a disabled module is zero (and weighted out)."""
        w = self.cfg.loss
        with autocast_disabled(out.anomaly_map.device):
            labels = labels.to(out.global_score.device, torch.float32)
            masks = masks.to(out.layer_maps.device, torch.float32)
            if masks.dim() == 4:
                masks = masks[:, 0]
            zero = out.global_score.new_zeros(())
            terms = {"global": F.binary_cross_entropy_with_logits(out.aux["global_logit"].float(), labels)}
            terms["focal"], terms["dice"] = losses.local_loss(out.layer_maps.float(), masks, w.focal_gamma)
            aux = out.aux
            if "mu" in aux:
                terms["kl"] = losses.kl_divergence(aux["mu"].float(), aux["logvar"].float())
                terms["rec"] = losses.reconstruction_loss(aux["g"].float(), aux["g_hat"].float())
            else:
                terms["kl"] = terms["rec"] = zero
            if "router_probs" in aux:
                terms["load_balance"] = losses.load_balance_loss(aux["router_probs"], aux["expert_index"])
            total = (w.global_weight * terms["global"] + w.local_weight * (terms["focal"] + terms["dice"])
                     + w.kl_weight * terms["kl"] + w.rec_weight * terms["rec"])
            if "load_balance" in terms:
                total = total + self.cfg.model.sa_moe.load_balance_weight * terms["load_balance"]
            terms["total"] = total
        return terms


def build_model(cfg: RunConfig) -> WMoECLIP:
    """The WMoE-CLIP model of ``cfg`` (its variant switches already applied)."""
    return WMoECLIP(cfg)
