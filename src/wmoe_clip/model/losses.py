"""The segmentation losses the methods share (WMoE-CLIP: docs/METHOD.md §4, paper eq. 9–10; AnomalyCLIP's
``loss.py``), all in float32: ``L_local = Σ_l [Focal(M_l, S) + Dice(M_l, S) + Dice(1 − M_l, 1 − S)]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_EPS = 1e-6


def focal_loss(prob: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss on the two-class probabilities (1 − p, p) of a map ``prob`` against ``target``, mean over pixels."""
    p = prob.clamp(_EPS, 1 - _EPS)
    loss = -target * (1 - p) ** gamma * torch.log(p) - (1 - target) * p**gamma * torch.log(1 - p)
    return loss.mean()


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 − mean_b (2|P∩S| + 1) / (|P| + |S| + 1)`` over the samples of a batch of maps."""
    p, t = prob.flatten(1), target.flatten(1)
    dice = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return 1 - dice.mean()


def loss_targets(global_score: torch.Tensor, layer_maps: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                 label_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``labels`` as ``label_dtype`` beside the global score, ``masks`` as float32 (B,H,W) beside the maps
    (a loader's (B,1,H,W) masks lose their channel)."""
    labels = labels.to(global_score.device, label_dtype)
    masks = masks.to(layer_maps.device, torch.float32)
    return labels, masks[:, 0] if masks.dim() == 4 else masks


def local_loss(layer_maps: torch.Tensor, masks: torch.Tensor, gamma: float,
               focal_fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] = focal_loss,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Focal and dice parts of ``L_local``, each summed over layers; ``layer_maps`` (B,L,S,S), ``masks`` (B,S,S)."""
    focal = layer_maps.new_zeros(())
    dice = layer_maps.new_zeros(())
    for layer in range(layer_maps.shape[1]):
        m = layer_maps[:, layer]
        focal = focal + focal_fn(m, masks, gamma)
        dice = dice + dice_loss(m, masks) + dice_loss(1 - m, 1 - masks)
    return focal, dice
