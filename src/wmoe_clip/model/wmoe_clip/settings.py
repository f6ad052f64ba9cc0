"""WMoE-CLIP's settings, the run config section ``model.wmoe_clip``: prompts, scores, the three modules
and the loss weights. Torch-free: the run config and the workflow read it without building a model.

``VARIANTS`` are the rows of the paper's Table 2, each the module switches it sets on these settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CTDSSettings:
    enabled: bool = True
    latent_dim: int = 256
    decoder_hidden: int = 512
    # Draw z ~ N(mu, sigma) at evaluation too; false uses z = mu so that scores are deterministic.
    sample_at_eval: bool = False
    # How P(z) shifts the prompt slots: "shared" (one vector added to every slot of both prompts) or
    # "per_slot" (a different vector for each slot of each prompt); the paper does not fix it.
    shift: str = "shared"


@dataclass(frozen=True)
class WCMASettings:
    enabled: bool = True
    reduction: int = 4
    attn_dim: int = 256
    heads: int = 1
    # T~ = T + attention (true) or T~ = attention alone (false).
    residual: bool = True
    # One WCMA module per feature layer (true) or one shared by all layers (false).
    per_layer: bool = True
    # Border handling of the Haar DWT (pytorch_wavelets mode); "zero" was the behaviour before it was a choice.
    dwt_mode: str = "symmetric"


@dataclass(frozen=True)
class SAMoESettings:
    enabled: bool = True
    adapter_dim: int = 256
    num_experts: int = 8
    top_k: int = 2
    expert_hidden: int = 512
    load_balance_weight: float = 0.0


@dataclass(frozen=True)
class LossSettings:
    focal_gamma: float = 2.0
    global_weight: float = 1.0
    local_weight: float = 1.0
    kl_weight: float = 0.001
    rec_weight: float = 1.0


@dataclass(frozen=True)
class Settings:
    prompt_length: int = 2
    prompt_normal: str = "a photo of a good"
    prompt_abnormal: str = "a photo of a damaged"
    temperature: float = 0.07
    # Image score α·s_g + (1 − α)·max(M).
    alpha: float = 0.5
    # "zero_residual": the last layer of every residual branch (WCMA's output projection, each expert's
    # output layer, CTDS's prompt map P) starts at zero, so every variant starts as CLIP; "default":
    # PyTorch's initialisation everywhere.
    init: str = "zero_residual"
    ctds: CTDSSettings = field(default_factory=CTDSSettings)
    wcma: WCMASettings = field(default_factory=WCMASettings)
    sa_moe: SAMoESettings = field(default_factory=SAMoESettings)
    loss: LossSettings = field(default_factory=LossSettings)


# The rows of the paper's Table 2: (CTDS, WCMA, SA-MoE) switched on or off.
SWITCHES: dict[str, tuple[bool, bool, bool]] = {
    "base": (False, False, False),
    "ctds": (True, False, False),
    "ctds_wcma": (True, True, False),
    "ctds_samoe": (True, False, True),
    "full": (True, True, True),
}
VARIANTS: dict[str, dict[str, Any]] = {
    name: {"ctds": {"enabled": ctds}, "wcma": {"enabled": wcma}, "sa_moe": {"enabled": sa_moe}}
    for name, (ctds, wcma, sa_moe) in SWITCHES.items()
}

# Where these settings sat before each method owned its section: old key -> key under model.wmoe_clip.
LEGACY_KEYS = {
    **{f"model.{key}": key for key in ("prompt_length", "prompt_normal", "prompt_abnormal", "temperature", "alpha",
                                         "init", "ctds", "wcma", "sa_moe")},
    "loss": "loss",
}

INIT_SCHEMES = ("zero_residual", "default")
CTDS_SHIFTS = ("shared", "per_slot")
# pytorch_wavelets' border modes; on an odd grid they differ only in the last row and column of the bands.
DWT_MODES = ("zero", "symmetric", "reflect", "periodic", "periodization")


def problems(cfg: Any) -> list[str]:
    """What is wrong with the values of ``cfg.model.wmoe_clip`` (the run config ``cfg`` of this method)."""
    s: Settings = cfg.model.wmoe_clip
    key = "model.wmoe_clip"
    out = []
    if not 0.0 <= s.alpha <= 1.0:
        out.append(f"{key}.alpha must lie in [0, 1]")
    if s.temperature <= 0:
        out.append(f"{key}.temperature must be positive")
    if s.prompt_length < 1:
        out.append(f"{key}.prompt_length must be at least 1")
    if not 1 <= s.sa_moe.top_k <= s.sa_moe.num_experts:
        out.append(f"{key}.sa_moe.top_k must lie in [1, num_experts]")
    if s.wcma.heads < 1 or s.wcma.attn_dim % s.wcma.heads:
        out.append(f"{key}.wcma.heads must be positive and divide {key}.wcma.attn_dim")
    for name, value, allowed in (("init", s.init, INIT_SCHEMES), ("ctds.shift", s.ctds.shift, CTDS_SHIFTS),
                                 ("wcma.dwt_mode", s.wcma.dwt_mode, DWT_MODES)):
        if value not in allowed:
            out.append(f"{key}.{name} must be one of {', '.join(allowed)}, got {value!r}")
    if s.init == "zero_residual" and not s.wcma.residual:
        out.append(f"{key}.init zero_residual needs {key}.wcma.residual true (a non-residual WCMA cannot "
                   f"start at the identity); set {key}.init: default")
    at_least = {
        "ctds.latent_dim": (s.ctds.latent_dim, 1), "ctds.decoder_hidden": (s.ctds.decoder_hidden, 1),
        "wcma.reduction": (s.wcma.reduction, 1), "wcma.attn_dim": (s.wcma.attn_dim, 1),
        "sa_moe.adapter_dim": (s.sa_moe.adapter_dim, 1), "sa_moe.expert_hidden": (s.sa_moe.expert_hidden, 1),
        "sa_moe.load_balance_weight": (s.sa_moe.load_balance_weight, 0),
        "loss.focal_gamma": (s.loss.focal_gamma, 0), "loss.global_weight": (s.loss.global_weight, 0),
        "loss.local_weight": (s.loss.local_weight, 0), "loss.kl_weight": (s.loss.kl_weight, 0),
        "loss.rec_weight": (s.loss.rec_weight, 0),
    }
    out += [f"{key}.{name} must be at least {low}, got {value!r}" for name, (value, low) in at_least.items()
            if value < low]
    return out
