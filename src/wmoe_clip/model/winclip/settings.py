"""WinCLIP's settings, the run config section ``model.winclip``: its prompt ensemble, windows and score
rules. Torch-free.

Every value that the WinCLIP paper leaves open, or where public implementations differ, is a key here;
the defaults are anomalib's (2.7), so that its maps and ours can be compared on the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The compositional prompt ensemble: state words ("{cls}" is the class name) × templates ("{state}" is a
# state with the class name filled in). Anomalib's lists, which follow the paper's supplementary.
NORMAL_STATES = (
    "{cls}", "flawless {cls}", "perfect {cls}", "unblemished {cls}",
    "{cls} without flaw", "{cls} without defect", "{cls} without damage",
)
ABNORMAL_STATES = ("damaged {cls}", "{cls} with flaw", "{cls} with defect", "{cls} with damage")
# 21 templates; "a jpeg corrupted photo of the {state}." appears twice (as in anomalib), so it weighs
# twice in the average, and "… of a …" of it is absent.
TEMPLATES = (
    "a cropped photo of the {state}.",
    "a close-up photo of a {state}.",
    "a close-up photo of the {state}.",
    "a bright photo of a {state}.",
    "a bright photo of the {state}.",
    "a dark photo of the {state}.",
    "a dark photo of a {state}.",
    "a jpeg corrupted photo of the {state}.",
    "a jpeg corrupted photo of the {state}.",
    "a blurry photo of the {state}.",
    "a blurry photo of a {state}.",
    "a photo of a {state}.",
    "a photo of the {state}.",
    "a photo of a small {state}.",
    "a photo of the small {state}.",
    "a photo of a large {state}.",
    "a photo of the large {state}.",
    "a photo of the {state} for visual inspection.",
    "a photo of a {state} for visual inspection.",
    "a photo of the {state} for anomaly detection.",
    "a photo of a {state} for anomaly detection.",
)
PROMPT_AVERAGES = ("raw", "normalised")
SCALE_FUSIONS = ("harmonic", "mean")
IMAGE_SCORES = ("global", "mean_with_map_max")
UPSAMPLINGS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class Settings:
    normal_states: tuple[str, ...] = NORMAL_STATES
    abnormal_states: tuple[str, ...] = ABNORMAL_STATES
    templates: tuple[str, ...] = TEMPLATES
    # "_" in a class name becomes a space ("metal_nut" → "metal nut"); false keeps the name as the data
    # names it (anomalib passes its category name as is).
    class_name_spaces: bool = True
    # How a state's sentences become one text embedding: the mean of the text encoder's raw outputs
    # (anomalib), or of their L2-normalised outputs (CLIP's zero-shot ensembling); L2-normalised after.
    prompt_average: str = "raw"
    # Window sizes in patches (the paper's small and mid scales), each slid with window_stride patches.
    window_sizes: tuple[int, ...] = (2, 3)
    window_stride: int = 1
    # τ of softmax(cos/τ) for every window and the whole image; null: CLIP's own 1 / logit_scale.exp().
    temperature: float | None = 0.07
    # The whole image is one scale of the map too: its score on every patch (anomalib, and the paper's
    # "image scale"); false: the window scales alone.
    map_includes_image: bool = True
    # How the per-scale patch maps are fused: harmonic mean (anomalib) or arithmetic mean.
    scale_fusion: str = "harmonic"
    # The patch map to the image size (align_corners false).
    upsample: str = "bilinear"
    # Image score: the whole image's score alone (the paper's zero-shot rule, anomalib's), or its mean
    # with the maximum of the smoothed map (the rule anomalib applies in few-shot mode).
    image_score: str = "global"


def problems(cfg: Any) -> list[str]:
    """What is wrong with the values of ``cfg.model.winclip`` (the run config ``cfg`` of this method)."""
    s: Settings = cfg.model.winclip
    out = []
    for key, states in (("normal_states", s.normal_states), ("abnormal_states", s.abnormal_states)):
        bad = [t for t in states if t.count("{cls}") != 1 or "{" in t.replace("{cls}", "")]
        if not states or bad:
            out.append(f"model.winclip.{key} must be a non-empty list of texts holding {{cls}} once and no other "
                       f"braces, got {bad or 'none'}")
    bad = [t for t in s.templates if t.count("{state}") != 1 or "{" in t.replace("{state}", "")]
    if not s.templates or bad:
        out.append("model.winclip.templates must be a non-empty list of texts holding {state} once and no other "
                   f"braces, got {bad or 'none'}")
    if not s.window_sizes or any(k < 1 for k in s.window_sizes) or len(set(s.window_sizes)) != len(s.window_sizes):
        out.append(f"model.winclip.window_sizes must be distinct sizes of at least 1 patch, got {list(s.window_sizes)}")
    if s.window_stride < 1 or any(s.window_stride > k for k in s.window_sizes):
        out.append(f"model.winclip.window_stride must lie in [1, smallest window size] so that windows cover every "
                   f"patch, got {s.window_stride}")
    if s.temperature is not None and not s.temperature > 0:
        out.append("model.winclip.temperature must be positive or null")
    for key, value, allowed in (("prompt_average", s.prompt_average, PROMPT_AVERAGES),
                                ("scale_fusion", s.scale_fusion, SCALE_FUSIONS),
                                ("image_score", s.image_score, IMAGE_SCORES),
                                ("upsample", s.upsample, UPSAMPLINGS)):
        if value not in allowed:
            out.append(f"model.winclip.{key} must be one of {', '.join(allowed)}, got {value!r}")
    return out
