"""Parameter counts of a model per learnable module (the first part of each parameter's name)."""

from __future__ import annotations

from .base import FrozenBackboneModel


def parameter_counts(model: FrozenBackboneModel) -> dict[str, int]:
    """Learnable parameters per module (0 for one of ``LEARNABLE_MODULES`` switched off), the total and
    the frozen backbone."""
    counts = {name: 0 for name in model.LEARNABLE_MODULES}
    for name, p in model.learnable_named_parameters():
        module = name.split(".", 1)[0]
        counts[module] = counts.get(module, 0) + p.numel()
    counts["total"] = sum(counts.values())
    counts["frozen backbone"] = sum(p.numel() for p in model.backbone.parameters())
    return counts


def parameter_table(model: FrozenBackboneModel) -> str:
    rows = [("module", "parameters")] + [(k, f"{v:,}") for k, v in parameter_counts(model).items()]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>14}" for a, b in rows)
