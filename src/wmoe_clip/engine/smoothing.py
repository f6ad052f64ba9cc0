"""Gaussian smoothing of anomaly maps at evaluation (docs/METHOD.md §2, docs/DATASETS.md §4.4: σ = 4).

The result equals ``scipy.ndimage.gaussian_filter(map, sigma)`` with scipy's defaults, computed on
the maps' device as two 1-D convolutions:

* border mode ``reflect`` (scipy's default, the half-sample symmetric extension ``d c b a | a b c d``),
  as AnomalyCLIP and AdaCLIP call it, so a defect at the border is not diluted by zeros;
* kernel radius ``int(truncate·σ + 0.5)`` with ``truncate = 4``, weights ``exp(−x²/2σ²)`` normalised
  to sum 1 — scipy's kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TRUNCATE = 4.0


def gaussian_kernel1d(sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    radius = int(TRUNCATE * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    phi = torch.exp(-0.5 * x**2 / float(sigma) ** 2)
    return (phi / phi.sum()).to(dtype)


def _reflect_index(n: int, radius: int, device) -> torch.Tensor:
    """Source index of every sample of the padded axis under the half-sample symmetric extension."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Smooth the last two axes of ``maps`` (…, H, W) with a Gaussian of ``sigma`` pixels; σ ≤ 0 is a no-op."""
    if sigma <= 0:
        return maps
    shape = maps.shape
    x = maps.reshape(-1, 1, shape[-2], shape[-1]).float()
    kernel = gaussian_kernel1d(sigma, x.device)
    r = (kernel.numel() - 1) // 2
    h, w = shape[-2], shape[-1]
    x = x.index_select(2, _reflect_index(h, r, x.device))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    x = x.index_select(3, _reflect_index(w, r, x.device))
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return x.reshape(shape)
