"""Training diagnostics from a forward pass's ``aux``: how far each learnable branch has moved CLIP.

Each value is a mean over the batch's samples, so an epoch's value is the sample-weighted mean of its
batches. A module that is switched off has no entries (never a stand-in 0, which would read as a
collapse). With ``model.wmoe_clip.init: zero_residual`` the step-0 values are ‖P(μ)‖ = 0, cos = 1.

- ``prompt_shift_norm``: ‖P(μ)‖, the prompt shift of evaluation (CTDS).
- ``prompt_shift_norm_sampled``: ‖P(z)‖, the shift the text encoder sees in training (z = μ + σ⊙ε).
- ``cos_text``: cos(T, T̃), over layers and both prompts (WCMA).
- ``cos_global``: cos(g, g′) (SA-MoE).
- ``router_entropy``: −Σ_e p_e ln p_e of the router probabilities, in nats: ln E when uniform, 0 when
  one expert takes everything (SA-MoE).
- ``selected_share`` (E values): each expert's share of the top-k selections; 1/E when balanced, 1/k
  for an expert chosen for every sample (SA-MoE).
- ``mean_router_prob`` (E values): the mean router probability per expert (SA-MoE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The per-expert vectors among the diagnostics (the rest are scalars).
EXPERT_USAGE = ("selected_share", "mean_router_prob")


@torch.no_grad()
def diagnostics(aux: dict[str, torch.Tensor]) -> dict[str, float | list[float]]:
    """The diagnostics of one batch from ``ModelOutput.aux`` (see the module docstring)."""
    out: dict[str, float | list[float]] = {}
    if "prompt_shift" in aux:
        out["prompt_shift_norm"] = _mean(aux["prompt_shift_mu"].norm(dim=-1))
        out["prompt_shift_norm_sampled"] = _mean(aux["prompt_shift"].norm(dim=-1))
    if "refined_text" in aux:
        text, refined = aux["text"], aux["refined_text"]  # (B,2,D), (B,L,2,D)
        out["cos_text"] = _mean(F.cosine_similarity(text.unsqueeze(1).double(), refined.double(), dim=-1))
    if "g_prime" in aux:
        out["cos_global"] = _mean(F.cosine_similarity(aux["g"].double(), aux["g_prime"].double(), dim=-1))
    if "router_probs" in aux:
        probs = aux["router_probs"].double()
        out["router_entropy"] = _mean(-torch.special.xlogy(probs, probs).sum(dim=-1))
        index = aux["expert_index"]
        counts = torch.bincount(index.flatten().cpu(), minlength=probs.shape[-1]).double()
        out["selected_share"] = (counts / index.numel()).tolist()
        out["mean_router_prob"] = probs.mean(dim=0).tolist()
    return out


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean())
