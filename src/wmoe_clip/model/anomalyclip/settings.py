"""AnomalyCLIP's settings, the run config section ``model.anomalyclip``: its learnable prompts (the
authors' ``n_ctx``, ``depth``, ``t_n_ctx``), temperature, loss weight and layers. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Settings:
    # Learnable context vectors per state, placed right after the start token.
    prompt_length: int = 12
    # Words after the context vectors: "[V1..V12] object." and "[V1..V12] damaged object.".
    normal_suffix: str = "object."
    abnormal_suffix: str = "damaged object."
    # Deep text tokens replace token positions 1..deep_prompt_length before text blocks
    # 1..deep_prompt_depth-1 (0-based), one learnable set per block, shared by both prompts.
    deep_prompt_depth: int = 9
    deep_prompt_length: int = 4
    # τ of softmax(cos/τ) for the maps and the global score.
    temperature: float = 0.07
    # λ of the loss CE + λ·Σ_layers (focal + dice + dice).
    local_weight: float = 4.0
    # The feature layers its maps use, a subset of model.feature_layers (null: all of them), so that
    # it can share one backbone configuration with the other methods of a protocol.
    layers: tuple[int, ...] | None = None


# The protocol of its paper, for `protocol: own` in a workflow config: the training source of each
# target, "default" for every target not named. Its README: "We test all datasets by training once on
# MVTec AD. For MVTec AD, AnomalyCLIP is trained on VisA."
OWN_PROTOCOL = {"default": "mvtec", "mvtec": "visa"}

# Where these settings sat before each method owned its section: old key -> key under model.anomalyclip.
LEGACY_KEYS = {"model.temperature": "temperature"}


def problems(cfg: Any) -> list[str]:
    """What is wrong with the values of ``cfg.model.anomalyclip`` (the run config ``cfg`` of this method)."""
    a: Settings = cfg.model.anomalyclip
    out = []
    if a.local_weight < 0:
        out.append("model.anomalyclip.local_weight must not be negative")
    if a.temperature <= 0:
        out.append("model.anomalyclip.temperature must be positive")
    if a.prompt_length < 1 or a.deep_prompt_depth < 1 or a.deep_prompt_length < 0:
        out.append("model.anomalyclip: prompt_length and deep_prompt_depth must be at least 1, "
                   "deep_prompt_length at least 0")
    elif a.deep_prompt_depth > 1 and not 1 <= a.deep_prompt_length <= a.prompt_length:
        out.append("model.anomalyclip.deep_prompt_length must lie in [1, prompt_length]: the deep "
                   "tokens replace context slots")
    layers = cfg.model.feature_layers
    if a.layers is not None and (not a.layers or not set(a.layers) <= set(layers)):
        out.append(f"model.anomalyclip.layers {list(a.layers)} must be a non-empty subset of "
                   f"model.feature_layers {list(layers)}")
    return out
