"""The tiny open_clip architecture used by the tests and the CPU demo.

It is an ordinary open_clip config (``configs/wmoe-tiny-quickgelu.json``: a 4-layer, 64-wide ViT
with 16-pixel patches at 112 px, so a 7×7 patch grid that is odd like ViT-L-14-336's 37×37, and a
2-layer text tower with CLIP's real vocabulary), registered with open_clip so that it goes through
exactly the same construction and forward code as ViT-L-14-336.
"""

from __future__ import annotations

from pathlib import Path

TINY_BACKBONE = "wmoe-tiny-quickgelu"
TINY_CONFIG_FILE = Path(__file__).resolve().parent.parent / "configs" / f"{TINY_BACKBONE}.json"


def register_tiny_backbone() -> None:
    """Make ``wmoe-tiny-quickgelu`` known to ``open_clip.create_model`` (idempotent)."""
    import open_clip

    if TINY_BACKBONE not in open_clip.list_models():
        open_clip.add_model_config(TINY_CONFIG_FILE)
