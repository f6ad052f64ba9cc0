"""CTDS — class-token distribution sampling: a VAE on the global token g (METHOD §1, paper eq. 1).

``mu = W_mu g + b_mu``, ``log sigma² = W_sigma g + b_sigma``, ``z = mu + sigma ⊙ eps`` while training
(``z = mu`` at evaluation unless configured otherwise), ``g_hat = Decoder(z)``, and ``P(z)``, the shift
added to every learnable prompt slot. Its losses (eq. 2, 3) live in :mod:`wmoe_clip.model.losses`.
"""

from __future__ import annotations

import torch
from torch import nn


class CTDS(nn.Module):
    def __init__(self, dim: int, latent_dim: int, hidden: int, text_width: int, sample_at_eval: bool = False):
        super().__init__()
        self.to_mu = nn.Linear(dim, latent_dim)
        self.to_logvar = nn.Linear(dim, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        # P: latent → text token width; the identity when the widths already match.
        self.to_prompt = nn.Identity() if latent_dim == text_width else nn.Linear(latent_dim, text_width)
        self.sample_at_eval = sample_at_eval

    def forward(self, g: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.to_mu(g), self.to_logvar(g)
        if self.training or self.sample_at_eval:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        return {"mu": mu, "logvar": logvar, "z": z, "g_hat": self.decoder(z), "prompt_shift": self.to_prompt(z)}
