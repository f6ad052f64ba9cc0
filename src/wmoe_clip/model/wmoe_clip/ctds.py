"""CTDS — class-token distribution sampling: a VAE on the global token g (docs/METHOD.md §1, paper eq. 1).

``mu = W_mu g + b_mu``, ``log sigma² = W_sigma g + b_sigma``, ``z = mu + sigma ⊙ eps`` while training
(``z = mu`` at evaluation unless configured otherwise), ``g_hat = Decoder(z)``, and ``P(z)``, the shift
of the learnable prompt slots. Its losses (eq. 2, 3) live in :mod:`wmoe_clip.model.losses`.

The paper fuses each sample with its "corresponding" vector, which does not fix how many vectors
``P(z)`` gives: one shift ``(B, W)`` added to every slot of both prompts (``slot_shape`` None, the
default reading) or one shift per slot ``(B, 2, M, W)`` (``slot_shape=(2, M)``: ``P`` maps to
``2·M·W`` values, a different ``P(z)`` for each slot of each prompt).

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
                 zero_init: bool = False, slot_shape: tuple[int, int] | None = None):
        super().__init__()
        self.to_mu = nn.Linear(dim, latent_dim)
        self.to_logvar = nn.Linear(dim, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.slot_shape = tuple(slot_shape) if slot_shape else None
        out = text_width * (self.slot_shape[0] * self.slot_shape[1] if self.slot_shape else 1)
        if zero_init:
            self.to_prompt = zero_(nn.Linear(latent_dim, out))
        else:  # P: latent → text token width; the identity when the widths already match.
            self.to_prompt = nn.Identity() if latent_dim == out else nn.Linear(latent_dim, out)
        self.sample_at_eval = sample_at_eval

    def _shift(self, z: torch.Tensor) -> torch.Tensor:
        shift = self.to_prompt(z)
        return shift if self.slot_shape is None else shift.reshape(z.shape[0], *self.slot_shape, -1)

    def forward(self, g: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.to_mu(g), self.to_logvar(g)
        if self.training or self.sample_at_eval:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        shift = self._shift(z)
        if z is mu:
            shift_mu = shift
        else:  # P(μ), the shift the prompts get at evaluation, for the training diagnostics only
            with torch.no_grad():
                shift_mu = self._shift(mu)
        return {"mu": mu, "logvar": logvar, "z": z, "g_hat": self.decoder(z), "prompt_shift": shift,
                "prompt_shift_mu": shift_mu}
