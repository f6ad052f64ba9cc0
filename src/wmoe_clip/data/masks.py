"""Reading a GT mask image: one value per pixel, shared by ``prepare``'s checks and the loader.

Single-channel masks (1-bit, 8-bit, 16-bit grey) are read as they are. Every other mode goes
through RGB, so a palette mask is read by its colours (not its palette indices) and an alpha channel
is ignored; a pixel's value is its largest colour channel. Foreground is ``value > threshold``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_SINGLE_CHANNEL = {"L", "I", "I;16", "I;16L", "I;16B", "I;16N"}


def mask_values(img: Image.Image) -> np.ndarray:
    """The H×W values of a mask image (see the module docstring)."""
    if img.mode == "1":
        img = img.convert("L")
    if img.mode in _SINGLE_CHANNEL:
        return np.asarray(img)
    return np.asarray(img.convert("RGB")).max(axis=-1)
