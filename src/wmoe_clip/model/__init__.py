"""The WMoE-CLIP model: frozen open_clip backbone, CTDS, WCMA, SA-MoE, losses and checkpoints."""

from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .wmoe_clip import LEARNABLE_MODULES, ImageFeatures, WMoECLIP, WMoEOutput, build_model

__all__ = [
    "LEARNABLE_MODULES",
    "ImageFeatures",
    "WMoECLIP",
    "WMoEOutput",
    "build_model",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
