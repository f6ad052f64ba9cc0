"""Procedural textured backgrounds: one look per class, fresh detail per image.

A class draws its *style* once (texture family, colours, frequency, orientation) from a seed derived
from its name, so images of a class resemble each other and classes differ; each image then draws
its own phase and noise. Four families cover the real sets' surfaces: stripes (fabric, wood),
woven grids, blotchy low-frequency noise (leather, tissue) and fine speckle (metal, skin).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

FAMILIES = ("stripes", "woven", "blotchy", "speckle")


def stable_seed(*parts: object) -> int:
    """A seed that depends only on ``parts`` (Python's hash() is salted per process)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


@dataclass(frozen=True)
class Style:
    family: str
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    frequency: float  # cycles per 64 px
    angle: float
    grey: bool

    @classmethod
    def draw(cls, rng: np.random.Generator, grey: bool) -> "Style":
        a, b = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
        if grey:
            a, b = np.full(3, a.mean()), np.full(3, b.mean())
        # Keep the two colours apart so the texture is visible.
        if np.abs(a - b).mean() < 40:
            b = np.clip(a + np.where(a < 128, 60.0, -60.0), 0, 255)
        return cls(
            family=FAMILIES[int(rng.integers(len(FAMILIES)))],
            colour_a=tuple(a.tolist()),
            colour_b=tuple(b.tolist()),
            frequency=float(rng.uniform(3, 9)),
            angle=float(rng.uniform(0, np.pi)),
            grey=grey,
        )


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: random values on a coarse grid, bicubically upsampled."""
    coarse = rng.random((max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    up = Image.fromarray(coarse, mode="F").resize((w, h), Image.BICUBIC)
    return np.clip(np.asarray(up), 0, 1)


def texture(rng: np.random.Generator, style: Style, h: int, w: int) -> np.ndarray:
    """An (h, w, 3) uint8 image of ``style`` with per-image phase and noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    k = 2 * np.pi * style.frequency / 64.0
    phase = rng.uniform(0, 2 * np.pi)
    u = xx * np.cos(style.angle) + yy * np.sin(style.angle)
    v = -xx * np.sin(style.angle) + yy * np.cos(style.angle)
    if style.family == "stripes":
        t = 0.5 + 0.5 * np.sin(k * u + phase)
    elif style.family == "woven":
        t = 0.5 + 0.25 * (np.sin(k * u + phase) + np.sin(k * v + phase))
    elif style.family == "blotchy":
        t = smooth_noise(rng, h, w, cell=max(4, int(64 / style.frequency)))
    else:
        t = 0.5 + 0.5 * (smooth_noise(rng, h, w, cell=3) - 0.5)
    t = np.clip(t + rng.normal(0, 0.04, (h, w)), 0, 1)[..., None]
    img = np.asarray(style.colour_a) * (1 - t) + np.asarray(style.colour_b) * t
    return np.clip(img, 0, 255).astype(np.uint8)
