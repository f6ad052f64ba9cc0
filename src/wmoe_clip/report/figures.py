"""Figures of the report: training curves from history.json, and images embedded as data URIs."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .results import Training

# Per-epoch entries that are bookkeeping, not curves.
_SKIP = {"epoch", "step", "lr"}


# Evaluation figures are re-encoded for the page: a 1700-px PNG of photos is ~600 kB, the same
# picture as a 1200-px JPEG ~100 kB, so a page with all 22 stays a few MB.
EMBED_WIDTH = 1200
EMBED_QUALITY = 85


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def file_data_uri(path: Path) -> str:
    """The image at ``path`` as a data URI, scaled to at most EMBED_WIDTH pixels, as JPEG."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > EMBED_WIDTH:
            im = im.resize((EMBED_WIDTH, round(im.height * EMBED_WIDTH / im.width)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=EMBED_QUALITY)
    return data_uri(buf.getvalue(), "image/jpeg")


def _flatten(entry: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in entry.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in _SKIP:
            if not any(tag in key for tag in ("time", "seconds")) and not key.endswith("_s"):
                out[name] = float(value)
    return out


def epoch_series(history: Any) -> dict[str, tuple[list[float], list[float]]]:
    """name -> (epochs, values) from a history: a list of per-epoch dicts or {"epochs": [...]}."""
    entries: Sequence[Any] = history.get("epochs", []) if isinstance(history, Mapping) else history or []
    series: dict[str, tuple[list[float], list[float]]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            continue
        epoch = float(entry.get("epoch", i + 1))
        # The loss terms when the history has them (engine/train.py), else every number.
        values = entry["loss"] if isinstance(entry.get("loss"), Mapping) else entry
        for name, value in _flatten(values).items():
            xs, ys = series.setdefault(name, ([], []))
            xs.append(epoch)
            ys.append(value)
    return series


def training_curves_png(trainings: Sequence[Training]) -> bytes | None:
    """One panel per training (source, variant, seed) with every per-epoch quantity; None if none.

    A quantity keeps its colour in every panel and the legend is drawn once, so panels with and
    without a term (e.g. the SA-MoE load balance) read alike.
    """
    panels = [(t, epoch_series(t.history)) for t in trainings]
    panels = [(t, s) for t, s in panels if s]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = sorted(set().union(*(s.keys() for _, s in panels)))
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colours = {name: palette(i % palette.N) for i, name in enumerate(names)}
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows + 0.6), squeeze=False)
    for ax, (t, series) in zip(axes.flat, panels):
        for name, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, marker="o", markersize=3, color=colours[name], label=name)
        ax.set_title(f"{t.source} / {t.variant} / seed {t.seed}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colours[n], marker="o", markersize=4) for n in names]
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 8), frameon=False, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
