"""AnomalyCLIP's training loss (their ``train.py`` with ``loss.py``'s FocalLoss and BinaryDiceLoss).

``L = CE(g·[t_n, t_a]/τ, y) + λ · Σ_l [Focal(M_l, S) + Dice(M_l, S) + Dice(1 − M_l, 1 − S)]``, λ = 4,
where ``M_l`` is the abnormal probability map of layer l at the input size and ``S`` the binary mask.
Their focal loss smooths the one-hot target: the probability of the true class ``q`` enters as
``p_t = (1 − 2ε)·q + 2ε`` with ε = 1e-5, and ``Focal = mean_pixels −(1 − p_t)^γ log p_t``, γ = 2.
``Dice(P, S) = 1 − mean_b (2 Σ P·S + 1) / (Σ P + Σ S + 1)`` is the project's ``dice_loss``.
"""

from __future__ import annotations

import torch

# AnomalyCLIP's FocalLoss defaults (gamma=2, smooth=1e-5).
FOCAL_GAMMA = 2.0
FOCAL_SMOOTH = 1e-5


def smoothed_focal_loss(prob: torch.Tensor, target: torch.Tensor, gamma: float = FOCAL_GAMMA,
                        smooth: float = FOCAL_SMOOTH) -> torch.Tensor:
    """Focal loss of an abnormal-probability map ``prob`` against a binary ``target``, mean over pixels."""
    q = torch.where(target > 0.5, prob, 1 - prob)
    pt = (1 - 2 * smooth) * q + 2 * smooth
    return (-((1 - pt) ** gamma) * torch.log(pt)).mean()
