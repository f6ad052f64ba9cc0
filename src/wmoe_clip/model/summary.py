"""Parameter counts of a WMoE-CLIP model per learnable module."""

from __future__ import annotations

from .wmoe_clip import LEARNABLE_MODULES, WMoECLIP


def parameter_counts(model: WMoECLIP) -> dict[str, int]:
    """Learnable parameters per module (0 for a switched-off one), the total and the frozen backbone."""
    counts = {name: 0 for name in LEARNABLE_MODULES}
    for name, p in model.learnable_named_parameters():
        counts[name.split(".", 1)[0]] += p.numel()
    counts["total"] = sum(counts[name] for name in LEARNABLE_MODULES)
    counts["frozen backbone"] = sum(p.numel() for p in model.backbone.parameters())
    return counts


def parameter_table(model: WMoECLIP) -> str:
    rows = [("module", "parameters")] + [(k, f"{v:,}") for k, v in parameter_counts(model).items()]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>14}" for a, b in rows)
