"""CTDS — class-token distribution sampling: a VAE on the global token g (docs/METHOD.md §1, paper eq. 1).

``mu = W_mu g + b_mu``, ``log sigma² = W_sigma g + b_sigma``, ``z = mu + sigma ⊙ eps`` while training
(``z = mu`` at evaluation unless configured otherwise), ``g_hat = Decoder(z)``, and ``P(z)``, the shift
added to every learnable prompt slot. Its losses (eq. 2, 3) live in :mod:`wmoe_clip.model.losses`.

``P`` is the identity when the latent width equals the text width, else a linear map. With
``zero_init`` it is always a linear map that starts at zero, so the prompts are the base prompts at
initialisation (docs/METHOD.md §6): an identity ``P`` would put ``z`` itself, of norm ≈ √latent_dim in the
prompt slots from the first step.
"""

from __future__ import annotations

import torch
from torch import nn

from .zero_init import zero_


class CTDS(nn.Module):
    def __init__(self, dim: int, latent_dim: int, hidden: int, text_width: int, sample_at_eval: bool = False,
                 zero_init: bool = False):
        super().__init__()
        self.to_mu = nn.Linear(dim, latent_dim)
        self.to_logvar = nn.Linear(dim, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        if zero_init:
            self.to_prompt = zero_(nn.Linear(latent_dim, text_width))
        else:  # P: latent → text token width; the identity when the widths already match.
            self.to_prompt = nn.Identity() if latent_dim == text_width else nn.Linear(latent_dim, text_width)
        self.sample_at_eval = sample_at_eval

    def forward(self, g: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.to_mu(g), self.to_logvar(g)
        if self.training or self.sample_at_eval:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        shift = self.to_prompt(z)
        if z is mu:
            shift_mu = shift
        else:  # P(μ), the shift the prompts get at evaluation, for the training diagnostics only
            with torch.no_grad():
                shift_mu = self.to_prompt(mu)
        return {"mu": mu, "logvar": logvar, "z": z, "g_hat": self.decoder(z), "prompt_shift": shift,
                "prompt_shift_mu": shift_mu}
