"""WMoE-CLIP: the frozen CLIP backbone and the three learnable modules, switched per Table 2 row.

``model(images) == model.forward_features(model.encode_image(images))``. ``encode_image`` is the
frozen, gradient-free part, so its output can be cached (fp16 is fine) and fed back.

Design details beyond docs/METHOD.md (see docs/REPRODUCTION.md):
- ``g`` and the patch tokens are L2-normalised before CTDS, WCMA and SA-MoE: CLIP's image–text
  geometry is cosine, and the frozen layers 6–24 differ in token norm by large factors.
- The frozen encoders run at ``model.precision`` (:meth:`FrozenCLIP.autocast`); the learnable modules,
  maps, scores and losses run in float32 with autocast off, whatever the caller's precision.
- With ``model.wmoe_clip.init: zero_residual`` the last layer of each residual branch starts at zero, so every
  Table 2 variant computes the ``base`` maps and scores at initialisation (docs/METHOD.md §6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...config import RunConfig
from .. import losses as shared_losses
from ..backbone import FrozenCLIP, autocast_disabled
from ..base import FrozenBackboneModel, ImageFeatures, ModelOutput
from ..prompts import PromptLearner
from . import losses
from .ctds import CTDS
from .diagnostics import EXPERT_USAGE, diagnostics
from .sa_moe import SAMoE
from .wcma import WCMA

LEARNABLE_MODULES = ("prompts", "ctds", "wcma", "sa_moe")


class WMoECLIP(FrozenBackboneModel):
    """``anomaly_map`` is the mean of the layer maps; ``image_score = α·s_g + (1 − α)·max(anomaly_map)``."""

    # The per-expert vectors of the diagnostics go into the history as ``expert_usage``.
    DIAGNOSTIC_GROUPS = {"expert_usage": EXPERT_USAGE}
    LEARNABLE_MODULES = LEARNABLE_MODULES

    def __init__(self, cfg: RunConfig, backbone: FrozenCLIP | None = None):
        super().__init__(cfg, backbone)
        s = cfg.model.wmoe_clip
        dim, width, layers = self.backbone.embed_dim, self.backbone.text_width, len(cfg.model.feature_layers)
        zero = s.init == "zero_residual"
        self.prompts = PromptLearner(s.prompt_normal, s.prompt_abnormal, s.prompt_length, width,
                                     self.backbone.context_length)
        slot_shape = (2, s.prompt_length) if s.ctds.shift == "per_slot" else None
        self.ctds = CTDS(dim, s.ctds.latent_dim, s.ctds.decoder_hidden, width, s.ctds.sample_at_eval, zero,
                         slot_shape) if s.ctds.enabled else None
        self.wcma = WCMA(layers, dim, s.wcma.reduction, s.wcma.attn_dim, s.wcma.heads, s.wcma.residual,
                         s.wcma.per_layer, s.wcma.dwt_mode, zero) if s.wcma.enabled else None
        self.sa_moe = SAMoE(layers, dim, s.sa_moe.adapter_dim, s.sa_moe.num_experts, s.sa_moe.top_k,
                            s.sa_moe.expert_hidden, zero) if s.sa_moe.enabled else None

    def encode_prompts(self, shift: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised text features ``T`` (B,2,D); B = 1 when the prompts are shared (no CTDS)."""
        embeddings = self.prompts(self.backbone.clip.token_embedding, shift)
        b, c, t, w = embeddings.shape
        eot = self.prompts.eot_index.repeat(b)
        text = self.backbone.encode_text(embeddings.reshape(b * c, t, w), eot, truncate=self.cfg.model.truncate_text)
        return F.normalize(text.float().reshape(b, c, -1), dim=-1)

    def forward_features(self, feats: ImageFeatures, classes: list[str] | None = None) -> ModelOutput:
        """The prompts are object-agnostic: ``classes`` is not used."""
        param = self.prompts.context
        # The learnable modules run in float32; only the frozen text encoder inside sets its own precision.
        with autocast_disabled(param.device):
            return self._forward_features(feats, param.device)

    def _forward_features(self, feats: ImageFeatures, device: torch.device) -> ModelOutput:
        m, s = self.cfg.model, self.cfg.model.wmoe_clip
        g = F.normalize(feats.global_token.to(device, torch.float32), dim=-1)
        patches = F.normalize(feats.patch_tokens.to(device, torch.float32), dim=-1)
        b = g.shape[0]
        aux: dict[str, torch.Tensor] = {"g": g}

        shift = None
        if self.ctds is not None:
            vae = self.ctds(g)
            shift = vae["prompt_shift"]
            aux.update(vae)
        text = self.encode_prompts(shift).expand(b, -1, -1)
        refined = self.wcma(text, patches, self.backbone.grid) if self.wcma is not None else None

        g_prime = g
        if self.sa_moe is not None:
            moe = self.sa_moe(patches)
            g_prime = g + moe.pop("delta")
            aux.update(moe)
            aux["g_prime"] = g_prime

        # Per-layer text (B,L,2,D): WCMA's refinement, or the same T for every layer.
        layer_text = refined if refined is not None else text.unsqueeze(1).expand(-1, patches.shape[1], -1, -1)
        logits = torch.einsum("blnd,blcd->blnc", patches, layer_text) / s.temperature
        probs = logits.softmax(dim=-1)[..., 1]
        gh, gw = self.backbone.grid
        layer_maps = F.interpolate(probs.reshape(b, -1, gh, gw), size=(m.image_size, m.image_size),
                                   mode="bilinear", align_corners=False)
        anomaly_map = layer_maps.mean(dim=1)
        global_logits = torch.einsum("bd,bcd->bc", F.normalize(g_prime, dim=-1), text) / s.temperature
        global_logit = global_logits[:, 1] - global_logits[:, 0]
        global_score = torch.sigmoid(global_logit)
        image_score = s.alpha * global_score + (1 - s.alpha) * anomaly_map.flatten(1).amax(dim=1)
        aux["global_logit"] = global_logit
        aux["text"] = text
        if refined is not None:
            aux["refined_text"] = refined
        return ModelOutput(layer_maps, anomaly_map, global_score, image_score, aux)

    def eval_image_score(self, global_score: torch.Tensor, smoothed_map: torch.Tensor) -> torch.Tensor:
        """``α·s_g + (1 − α)·max(M)`` with ``M`` the smoothed map (docs/METHOD.md §4), so one noisy pixel cannot
        decide an image."""
        alpha = self.cfg.model.wmoe_clip.alpha
        return alpha * global_score.float() + (1 - alpha) * smoothed_map.flatten(1).amax(dim=1)

    def diagnostics(self, aux: dict[str, torch.Tensor]) -> dict[str, float | list[float]]:
        return diagnostics(aux)

    def loss(self, out: ModelOutput, labels: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every loss term and ``total``; a disabled module has no terms (``kl``, ``rec``, ``load_balance``)."""
        s = self.cfg.model.wmoe_clip
        w = s.loss
        with autocast_disabled(out.anomaly_map.device):
            labels, masks = shared_losses.loss_targets(out.global_score, out.layer_maps, labels, masks, torch.float32)
            terms = {"global": F.binary_cross_entropy_with_logits(out.aux["global_logit"].float(), labels)}
            terms["focal"], terms["dice"] = shared_losses.local_loss(out.layer_maps.float(), masks, w.focal_gamma)
            total = w.global_weight * terms["global"] + w.local_weight * (terms["focal"] + terms["dice"])
            aux = out.aux
            if "mu" in aux:
                terms["kl"] = losses.kl_divergence(aux["mu"].float(), aux["logvar"].float())
                terms["rec"] = losses.reconstruction_loss(aux["g"].float(), aux["g_hat"].float())
                total = total + w.kl_weight * terms["kl"] + w.rec_weight * terms["rec"]
            if "router_probs" in aux:
                terms["load_balance"] = losses.load_balance_loss(aux["router_probs"], aux["expert_index"])
            if "load_balance" in terms:
                total = total + s.sa_moe.load_balance_weight * terms["load_balance"]
            terms["total"] = total
        return terms

