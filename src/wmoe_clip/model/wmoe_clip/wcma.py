"""WCMA — wavelet-enhanced cross-modal attention (docs/METHOD.md §2, paper eq. 5–7).

Per feature layer: a one-level Haar DWT of the patch map gives ``X_L`` and ``X_H = X_LH + X_HL + X_HH``;
``U = X_L + X_H``; ``A = sigmoid(L2(ReLU(L1(GAP(U)))) + PWConv(U))``; ``F_w = X_L + A ⊙ X_H``; then the
text embeddings attend to ``F_w``: ``T~ = T + softmax(Q Kᵀ/√d) V W_o`` with ``Q = T W_q``,
``K = F_w W_k``, ``V = F_w W_v``, L2-normalised.

With ``zero_init`` the output projection ``W_o`` starts at zero, so ``T~ = T`` at initialisation
(docs/METHOD.md §6). The DWT's border ``mode`` matters on an odd grid (37×37): the last row and column of the
bands see one padded sample, which ``zero`` padding turns into an artificial edge.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .zero_init import zero_

with warnings.catch_warnings():
    # pytorch_wavelets 1.3.0 imports pkg_resources, which warns on recent setuptools.
    warnings.simplefilter("ignore", UserWarning)
    from pytorch_wavelets import DWTForward


class HaarSplit(nn.Module):
    """One-level Haar DWT of a (B,C,H,W) map into the low band and the sum of the three high bands."""

    def __init__(self, mode: str = "symmetric"):
        super().__init__()
        self.dwt = DWTForward(J=1, wave="haar", mode=mode)

    def bands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``X_L`` (B,C,h,w) and the high bands (B,C,3,h,w) in pytorch_wavelets' order LH, HL, HH."""
        low, (high,) = self.dwt(x)
        return low, high

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.bands(x)
        return low, high.sum(dim=2)


class WaveletEnhancement(nn.Module):
    """``F_w = X_L + A ⊙ X_H`` with the global/local attention weights ``A`` of eq. 5–6."""

    def __init__(self, dim: int, reduction: int, dwt_mode: str):
        super().__init__()
        self.haar = HaarSplit(dwt_mode)
        self.global_fc = nn.Sequential(nn.Linear(dim, dim // reduction), nn.ReLU(), nn.Linear(dim // reduction, dim))
        self.local_conv = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        low, high = self.haar(fmap)
        u = low + high
        a_global = self.global_fc(u.mean(dim=(2, 3)))[:, :, None, None]
        weights = torch.sigmoid(a_global + self.local_conv(u))
        return low + weights * high


class TextToImageAttention(nn.Module):
    """Cross-attention with the text embeddings as queries and image tokens as keys and values (eq. 7)."""

    def __init__(self, dim: int, attn_dim: int, heads: int, residual: bool, zero_init: bool = False):
        super().__init__()
        self.q = nn.Linear(dim, attn_dim)
        self.k = nn.Linear(dim, attn_dim)
        self.v = nn.Linear(dim, attn_dim)
        self.o = nn.Linear(attn_dim, dim)
        if zero_init:
            zero_(self.o)
        self.heads = heads
        self.residual = residual

    def forward(self, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``text`` (B,C,D), ``tokens`` (B,N,D) → refined, L2-normalised text (B,C,D)."""
        b, c, _ = text.shape
        split = lambda t: t.view(b, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        attended = F.scaled_dot_product_attention(split(self.q(text)), split(self.k(tokens)), split(self.v(tokens)))
        update = self.o(attended.transpose(1, 2).reshape(b, c, -1))
        return F.normalize(text + update if self.residual else update, dim=-1)


class WCMALayer(nn.Module):
    def __init__(self, dim: int, reduction: int, attn_dim: int, heads: int, residual: bool, dwt_mode: str,
                 zero_init: bool):
        super().__init__()
        self.enhance = WaveletEnhancement(dim, reduction, dwt_mode)
        self.cross = TextToImageAttention(dim, attn_dim, heads, residual, zero_init)

    def forward(self, text: torch.Tensor, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, d = tokens.shape
        fmap = tokens.transpose(1, 2).reshape(b, d, *grid)
        enhanced = self.enhance(fmap).flatten(2).transpose(1, 2)
        return self.cross(text, enhanced)


class WCMA(nn.Module):
    """WCMA over all feature layers: refined text (B,L,C,D) from text (B,C,D) and patches (B,L,N,D)."""

    def __init__(self, num_layers: int, dim: int, reduction: int, attn_dim: int, heads: int,
                 residual: bool, per_layer: bool, dwt_mode: str = "symmetric", zero_init: bool = False):
        super().__init__()
        count = num_layers if per_layer else 1
        self.layers = nn.ModuleList(WCMALayer(dim, reduction, attn_dim, heads, residual, dwt_mode, zero_init)
                                    for _ in range(count))
        self.num_layers = num_layers

    def forward(self, text: torch.Tensor, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        refined = [
            self.layers[i if len(self.layers) > 1 else 0](text, patches[:, i], grid) for i in range(self.num_layers)
        ]
        return torch.stack(refined, dim=1)
