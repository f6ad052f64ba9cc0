"""Pictures of anomaly maps: the per-target sample grid (the paper's Figure 2) and heatmap overlays.

Colour scale: the grid shares one scale across its samples (the min and max of the maps shown), so a
normal image and a defect are comparable within a figure and no map is stretched on its own — per-map
normalisation would paint every normal image as anomalous. Prediction overlays use the fixed
probability scale [0, 1] for the same reason, across images.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

OVERLAY_ALPHA = 0.5
COLORMAP = "jet"


@dataclass
class Sample:
    image: np.ndarray  # H×W×3 uint8
    mask: np.ndarray  # H×W bool
    anomaly_map: np.ndarray  # H×W float
    cls_name: str
    label: int
    score: float


def denormalise(image) -> np.ndarray:
    """A normalised 3×H×W tensor or array (OpenAI CLIP mean/std) back to H×W×3 uint8."""
    arr = np.asarray(image, dtype=np.float32)
    mean = np.asarray(OPENAI_DATASET_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(OPENAI_DATASET_STD, dtype=np.float32)[:, None, None]
    return np.clip(np.rint((arr * std + mean) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def overlay(image: np.ndarray, anomaly_map: np.ndarray, vmin: float = 0.0, vmax: float = 1.0,
            rows: int = 512) -> np.ndarray:
    """``image`` (H×W×3 uint8) blended with the colour-mapped ``anomaly_map`` (H×W) on [vmin, vmax].

    Computed ``rows`` image rows at a time: the colour map works in float64 (32 bytes a pixel), which
    for a whole 50-megapixel photo would be gigabytes.
    """
    from matplotlib import colormaps

    span = vmax - vmin if vmax > vmin else 1.0
    out = np.empty(np.shape(image), dtype=np.uint8)
    for r in range(0, out.shape[0], rows):
        norm = np.clip((np.asarray(anomaly_map[r : r + rows], dtype=np.float32) - vmin) / span, 0.0, 1.0)
        heat = colormaps[COLORMAP](norm)[..., :3] * 255.0
        blend = (1 - OVERLAY_ALPHA) * image[r : r + rows] + OVERLAY_ALPHA * heat
        out[r : r + rows] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out


def sample_grid(samples: Sequence[Sample], path: str | os.PathLike, title: str) -> None:
    """Write a grid of columns (image, ground truth, map overlay) per sample, atomically, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import FIGURE_SOFTWARE, atomic_path

    if not samples:
        raise ValueError("no samples to draw")
    vmin = float(min(s.anomaly_map.min() for s in samples))
    vmax = float(max(s.anomaly_map.max() for s in samples))
    cols = len(samples)
    fig, axes = plt.subplots(3, cols, figsize=(1.9 * cols + 0.6, 6.2), squeeze=False)
    for j, s in enumerate(samples):
        state = "anomalous" if s.label else "normal"
        axes[0, j].imshow(s.image)
        axes[0, j].set_title(f"{s.cls_name}\n{state}", fontsize=8)
        axes[1, j].imshow(s.mask, cmap="gray", vmin=0, vmax=1)
        axes[2, j].imshow(overlay(s.image, s.anomaly_map, vmin, vmax))
        axes[2, j].set_xlabel(f"score {s.score:.3f}", fontsize=8)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    for row, name in enumerate(("image", "ground truth", "anomaly map")):
        axes[row, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(f"{title}\nmap colour scale [{vmin:.3f}, {vmax:.3f}] shared by all samples", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        # The Software chunk tells a rerun that the file at this path is its own earlier figure.
        fig.savefig(tmp, dpi=110, format="png", metadata={"Software": FIGURE_SOFTWARE})
    plt.close(fig)


def select_samples(records: Sequence[dict], n: int) -> list[int]:
    """Indices of up to ``n`` records for the grid: an anomalous and a normal image of each of
    ``ceil(n/2)`` classes spread evenly over the class list (a second anomaly where a class has no normal)."""
    by_class: dict[str, dict[int, list[int]]] = {}
    for i, r in enumerate(records):
        by_class.setdefault(r["cls_name"], {0: [], 1: []})[int(r["anomaly"])].append(i)
    classes = list(by_class)
    if n <= 0 or not classes:
        return []
    k = min(len(classes), math.ceil(n / 2))
    chosen = [classes[(i * len(classes)) // k] for i in range(k)]
    picks: list[int] = []
    for cls in chosen:
        anomalous, normal = by_class[cls][1], by_class[cls][0]
        pair = (anomalous[:1] + normal[:1]) if normal and anomalous else (anomalous or normal)[:2]
        picks.extend(pair)
    if len(picks) < n:  # few classes: fill with further images, still spread over the classes
        rest = [i for cls in classes for lab in (1, 0) for i in by_class[cls][lab] if i not in picks]
        picks.extend(rest[: n - len(picks)])
    return picks[:n]
