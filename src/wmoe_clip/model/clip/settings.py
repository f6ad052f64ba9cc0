"""The ``clip`` baseline's settings, the run config section ``model.clip``: class-name prompts on CLIP's
plain last-block tokens. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Settings:
    # "{cls}" is replaced by the class name with "_" as a space.
    normal_template: str = "a photo of a normal {cls}"
    abnormal_template: str = "a photo of an anomalous {cls}"
    # τ of softmax(cos/τ); null: CLIP's own learned scale, 1 / logit_scale.exp() (1/100 for OpenAI's).
    temperature: float | None = None


def problems(cfg: Any) -> list[str]:
    """What is wrong with the values of ``cfg.model.clip`` (the run config ``cfg`` of this method)."""
    c: Settings = cfg.model.clip
    out = []
    for key, template in (("normal_template", c.normal_template), ("abnormal_template", c.abnormal_template)):
        if template.count("{cls}") != 1 or "{" in template.replace("{cls}", ""):
            out.append(f"model.clip.{key} must hold the placeholder {{cls}} once and no other braces, got {template!r}")
    if c.temperature is not None and not c.temperature > 0:
        out.append("model.clip.temperature must be positive or null")
    return out
