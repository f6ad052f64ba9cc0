"""Planted defects with exact masks: spots, scratches and texture swaps.

The same three families appear in every synthetic dataset, so a model trained on one stand-in can
find them in another (the zero-shot transfer the project measures). Each defect changes exactly the
pixels of its mask, and is large and contrasting enough for a small model to learn.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .textures import Style, texture

DEFECTS = ("spot", "scratch", "swap")


def _shape(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """A boolean (h, w) region for one defect, kept away from the borders."""
    m = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(m)
    s = min(h, w)
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    if kind == "scratch":
        length, angle = rng.uniform(0.35, 0.6) * s, rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=max(2, int(s * 0.06)))
    else:
        rx, ry = rng.uniform(0.08, 0.16) * s, rng.uniform(0.08, 0.16) * s
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    return np.asarray(m) > 0


def plant(
    rng: np.random.Generator, img: np.ndarray, style: Style, kind: str, taken: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Plant one defect of ``kind`` in ``img`` (h, w, 3 uint8); returns (new image, its region).

    ``taken`` (previous defects' union) is excluded from the region, so regions do not overlap.
    """
    h, w = img.shape[:2]
    region = _shape(rng, h, w, kind)
    if taken is not None:
        region &= ~taken
    out = img.astype(np.float32)
    mean = out.mean()
    if kind == "spot":
        # Bright on dark surfaces, dark on bright ones: always a strong contrast.
        value = 20.0 if mean > 128 else 235.0
        out[region] = 0.25 * out[region] + 0.75 * value
    elif kind == "scratch":
        out[region] = 245.0 if mean < 128 else 15.0
    else:
        other = Style(
            family="speckle" if style.family != "speckle" else "stripes",
            colour_a=style.colour_b, colour_b=tuple(255.0 - c for c in style.colour_a),
            frequency=style.frequency * 2.5, angle=style.angle + np.pi / 2, grey=style.grey,
        )
        out[region] = texture(rng, other, h, w)[region]
    return np.clip(out, 0, 255).astype(np.uint8), region
