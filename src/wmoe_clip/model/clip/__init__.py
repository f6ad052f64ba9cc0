"""Plain CLIP, the training-free baseline of AnomalyCLIP's Table 1: class-name prompts on CLIP's own
last-block patch tokens. Its settings (``settings``) import without torch; the model on first use."""

from ..lazy import lazy_exports

_EXPORTS = {"CLIPBaseline": ".model"}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
