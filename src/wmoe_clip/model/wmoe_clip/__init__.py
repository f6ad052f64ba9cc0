"""WMoE-CLIP: learnable prompts with CTDS, WCMA and SA-MoE on the frozen backbone, switched per Table 2 row.
Its settings (``settings``) import without torch; the model classes on first use."""

from ..lazy import lazy_exports

_EXPORTS = {"LEARNABLE_MODULES": ".model", "WMoECLIP": ".model"}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
