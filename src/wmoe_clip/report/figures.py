"""Figures of the report: training curves from history.json, and images embedded as data URIs."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .results import Training

# Per-epoch entries that are bookkeeping, not curves (in histories of another layout).
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


# Panel titles, in the order the panels are drawn; other quantities follow, sorted.
PANEL_TITLES = {
    "loss/total": "loss: total",
    "loss/global": "loss: global (BCE)",
    "loss/focal": "loss: focal",
    "loss/dice": "loss: dice",
    "loss/kl": "loss: KL (CTDS)",
    "loss/rec": "loss: reconstruction (CTDS)",
    "loss/load_balance": "loss: load balance (SA-MoE)",
    "diagnostics/prompt_shift_norm": "‖P(μ)‖ (CTDS)",
    "diagnostics/prompt_shift_norm_sampled": "‖P(z)‖ in training (CTDS)",
    "diagnostics/cos_text": "cos(T, T̃) (WCMA)",
    "diagnostics/cos_global": "cos(g, g′) (SA-MoE)",
    "diagnostics/router_entropy": "router entropy, nats (SA-MoE)",
    "expert_usage/max_selected_share": "largest expert share (SA-MoE)",
    "lr": "learning rate",
    "grad_scale": "fp16 loss scale",
    "skipped_steps": "fp16 skipped steps",
}


def _entry_values(entry: Mapping[str, Any]) -> dict[str, float]:
    """The plotted quantities of one history entry of engine/train.py (or every number of another)."""
    if not isinstance(entry.get("loss"), Mapping):
        return _flatten(entry)
    values = _flatten({"loss": entry["loss"], "diagnostics": entry.get("diagnostics") or {}})
    for key in ("lr", "grad_scale", "skipped_steps"):
        if isinstance(entry.get(key), (int, float)):
            values[key] = float(entry[key])
    share = (entry.get("expert_usage") or {}).get("selected_share")
    if share:
        values["expert_usage/max_selected_share"] = float(max(share))
    return values


def epoch_series(history: Any) -> dict[str, tuple[list[float], list[float]]]:
    """name -> (epochs, values) from a history: a list of per-epoch dicts or {"epochs": [...]}."""
    entries: Sequence[Any] = history.get("epochs", []) if isinstance(history, Mapping) else history or []
    series: dict[str, tuple[list[float], list[float]]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            continue
        epoch = float(entry.get("epoch", i + 1))
        for name, value in _entry_values(entry).items():
            xs, ys = series.setdefault(name, ([], []))
            xs.append(epoch)
            ys.append(value)
    return series


def _num_experts(trainings: Sequence[Training]) -> int | None:
    for t in trainings:
        for entry in t.history if isinstance(t.history, list) else []:
            share = isinstance(entry, Mapping) and (entry.get("expert_usage") or {}).get("selected_share")
            if share:
                return len(share)
    return None


def curve_panels(trainings: Sequence[Training]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """quantity -> {training label: (epochs, values)}, quantities in :data:`PANEL_TITLES` order.

    A training without a quantity (its module is switched off) has no line in that panel.
    """
    per_training = {f"{t.source} / {t.variant} / seed {t.seed}": epoch_series(t.history) for t in trainings}
    names = set().union(*per_training.values()) if per_training else set()
    order = [n for n in PANEL_TITLES if n in names] + sorted(names - set(PANEL_TITLES))
    return {name: {label: s[name] for label, s in per_training.items() if name in s} for name in order}


def _references(num_experts: int | None) -> dict[str, tuple[float, str]]:
    """Dotted reference lines: where a branch sits at the identity, and a balanced router."""
    refs = {"diagnostics/cos_text": (1.0, "identity"), "diagnostics/cos_global": (1.0, "identity")}
    if num_experts:
        refs["diagnostics/router_entropy"] = (math.log(num_experts), "uniform")
        refs["expert_usage/max_selected_share"] = (1 / num_experts, "balanced")
    return refs


def training_curves_png(trainings: Sequence[Training]) -> bytes | None:
    """Small multiples: one panel per quantity (loss terms, diagnostics, expert usage, learning rate),
    one line per training (source, variant, seed) in the same colour in every panel; None if none.

    Collapse reads at a glance: ‖P(μ)‖ flat at 0, a cosine running away from its identity line, the
    router entropy falling to 0 or the largest expert share rising to 1/k (one expert in every top-k).
    """
    panels = curve_panels(trainings)
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    labels = list(dict.fromkeys(label for lines in panels.values() for label in lines))
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colours = {label: palette(i % palette.N) for i, label in enumerate(labels)}
    references = _references(_num_experts(trainings))
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows + 0.3 + 0.25 * -(-len(labels) // 4)),
                             squeeze=False)
    for ax, (name, lines) in zip(axes.flat, panels.items()):
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="o", markersize=3, color=colours[label], label=label)
        if name in references:
            value, text = references[name]
            ax.axhline(value, color="0.4", linestyle=":", linewidth=1)
            low, high = ax.get_ylim()
            # The label on the inner side of the line, so that it stays inside the panel.
            ax.annotate(text, (0.01, value), xycoords=("axes fraction", "data"), fontsize=7, color="0.4",
                        va="top" if value > (low + high) / 2 else "bottom")
        ax.set_title(PANEL_TITLES.get(name, name), fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colours[label], marker="o", markersize=4) for label in labels]
    legend_rows = -(-len(labels) // 4)
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.1 + 0.25 * legend_rows) / fig.get_figheight()))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
