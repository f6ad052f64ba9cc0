"""Small random inputs for the metric tests: heavy ties, defect-free images, diagonal-touching blobs."""

from __future__ import annotations

import numpy as np


def random_scores(rng: np.random.Generator, shape, kind: str) -> np.ndarray:
    """'ties': few distinct values; 'float32' / 'float64': continuous; 'constant': one value."""
    if kind == "ties":
        return rng.integers(0, rng.integers(2, 6), size=shape).astype(np.float32) / 4
    if kind == "constant":
        return np.full(shape, 0.25, dtype=np.float32)
    return rng.normal(size=shape).astype(kind)


def random_class(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(masks, maps) of 1-4 small images; some images defect-free; maps correlated with the masks."""
    n, h, w = int(rng.integers(1, 5)), int(rng.integers(3, 11)), int(rng.integers(3, 11))
    masks = rng.random((n, h, w)) < rng.uniform(0.05, 0.4)
    masks[rng.random(n) < 0.3] = False  # defect-free images
    maps = random_scores(rng, masks.shape, kind)
    if kind != "constant":
        maps = (maps + rng.uniform(0, 2) * masks).astype(maps.dtype)
    return masks, maps
