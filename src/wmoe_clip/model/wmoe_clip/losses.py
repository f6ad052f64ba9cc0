"""WMoE-CLIP's own loss terms (docs/METHOD.md §1, paper eq. 2, 3; the optional load-balance term), in float32.

``L = w_g·L_global + w_l·L_local + λ_KL·L_KL + λ_rec·L_rec (+ λ_lb·L_lb)``; ``L_local`` is the shared
``model.losses.local_loss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma²) ‖ N(0, I)) summed over latent dimensions, mean over the batch (eq. 2)."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=-1)).mean()


def reconstruction_loss(g: torch.Tensor, g_hat: torch.Tensor) -> torch.Tensor:
    """``mean_batch ||g − g_hat||²`` (eq. 3)."""
    return (g - g_hat).pow(2).sum(dim=-1).mean()


def load_balance_loss(router_probs: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer balance term ``E · Σ_i f_i P_i``: 1 when routing is uniform, E when collapsed."""
    num_experts = router_probs.shape[-1]
    counts = F.one_hot(expert_index, num_experts).float().sum(dim=(0, 1))
    fraction = counts / counts.sum()
    return num_experts * (fraction * router_probs.float().mean(dim=0)).sum()
