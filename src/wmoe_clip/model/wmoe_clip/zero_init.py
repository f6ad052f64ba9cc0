"""Zero initialisation of the last layer of a residual branch (docs/METHOD.md §6).

A branch ``x + f(x)`` whose last layer is zero starts as the identity, yet learns: that layer's gradient
is its input times the upstream gradient, which is not zero, and once it has moved the layers before
it receive gradients too (as adapters, LoRA and ControlNet's zero convolutions do).
"""

from __future__ import annotations

from torch import nn


def zero_(layer: nn.Linear) -> nn.Linear:
    """Set the weight and bias of ``layer`` to zero in place; returns the layer."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer
