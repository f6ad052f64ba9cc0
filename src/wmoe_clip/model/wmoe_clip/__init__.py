"""WMoE-CLIP: learnable prompts with CTDS, WCMA and SA-MoE on the frozen backbone, switched per Table 2 row."""

from .model import LEARNABLE_MODULES, WMoECLIP

__all__ = ["LEARNABLE_MODULES", "WMoECLIP"]
