"""The tiny open_clip architectures used by the tests and the CPU demo.

They are ordinary open_clip configs in ``configs/``, registered with open_clip so that they go through
exactly the same construction and forward code as ViT-L-14-336:

- ``wmoe-tiny-quickgelu``: a 4-layer, 64-wide ViT with 16-pixel patches at 112 px, so a 7×7 patch grid
  that is odd like ViT-L-14-336's 37×37, and a 2-layer text tower with CLIP's real vocabulary;
- ``wmoe-tiny-text12-quickgelu``: the same with a 12-layer text tower, as deep as CLIP's, for methods
  with per-layer text prompts (AnomalyCLIP's deep tokens enter text blocks 1..8);
- ``wmoe-tiny-gelu``: ViT-B-16-plus-240's kind (GELU, not QuickGELU) at 112 px, a 7×7 patch grid that
  holds 2×2 and 3×3 windows at several positions (WinCLIP).
"""

from __future__ import annotations

from pathlib import Path

TINY_BACKBONE = "wmoe-tiny-quickgelu"
TINY_TEXT12_BACKBONE = "wmoe-tiny-text12-quickgelu"
TINY_GELU_BACKBONE = "wmoe-tiny-gelu"
TINY_BACKBONES = (TINY_BACKBONE, TINY_TEXT12_BACKBONE, TINY_GELU_BACKBONE)
_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def register_tiny_backbone() -> None:
    """Make the tiny architectures known to ``open_clip.create_model`` (idempotent)."""
    import open_clip

    known = open_clip.list_models()
    for name in TINY_BACKBONES:
        if name not in known:
            open_clip.add_model_config(_CONFIG_DIR / f"{name}.json")
