"""WinCLIP's windows: which patch tokens each sliding window holds, its embedding, and the harmonic
aggregation of window scores onto the patches.

A window of k×k patches is the class token and those k² patch tokens, each with its own positional
embedding, taken before ``ln_pre`` and run through the whole visual transformer as a sequence of its
own (batch first: one window never attends to another's tokens); its embedding is the class token's
output, as the image's.
"""

from __future__ import annotations

import torch

from ...errors import WMoEError
from ..backbone import FrozenCLIP


def window_indices(grid: tuple[int, int], size: int, stride: int = 1) -> torch.Tensor:
    """(n_windows, size²) long: the row-major patch indices of each size×size window of a ``grid``
    (rows, columns) of patches, windows in row-major order of their top-left patch."""
    rows, cols = grid
    if size > min(rows, cols) or (rows - size) % stride or (cols - size) % stride:
        raise WMoEError(f"windows of {size}×{size} patches with stride {stride} do not tile the {rows}×{cols} patch "
                        "grid (model.winclip.window_sizes, window_stride)")
    top = torch.arange(0, rows - size + 1, stride)
    left = torch.arange(0, cols - size + 1, stride)
    corners = (top[:, None] * cols + left[None, :]).flatten()
    offsets = (torch.arange(size)[:, None] * cols + torch.arange(size)[None, :]).flatten()
    return corners[:, None] + offsets[None, :]


def harmonic_aggregate(scores: torch.Tensor, windows: torch.Tensor, n_patches: int) -> torch.Tensor:
    """(B,n_windows) window scores → (B,n_patches): on each patch, the harmonic mean of the scores of
    the windows that hold it (a zero score gives zero)."""
    cover = torch.zeros(windows.shape[0], n_patches, dtype=scores.dtype, device=scores.device)
    cover.scatter_(1, windows.to(scores.device), 1.0)
    return cover.sum(dim=0) / (scores.reciprocal() @ cover)


@torch.no_grad()
def window_embeddings(backbone: FrozenCLIP, tokens: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """(B,n_windows,D): the embedding of each window of ``windows`` (n_windows, k²) from the image tokens
    (B,1+N,W) of :meth:`FrozenCLIP.embed_image` (class token first)."""
    b, n = tokens.shape[0], windows.shape[0]
    cls = torch.zeros(n, 1, dtype=torch.long, device=windows.device)
    index = torch.cat([cls, windows + 1], dim=1).to(tokens.device)  # +1: patch i is token i + 1
    sequences = tokens[:, index]  # (B,n,1+k²,W)
    return backbone.encode_tokens(sequences.flatten(0, 1)).view(b, n, -1)
