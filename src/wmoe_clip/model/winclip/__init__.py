"""WinCLIP (CVPR 2023), the training-free control: a compositional prompt ensemble scored on window
embeddings at 2×2 and 3×3 patches and on the whole image. Its settings (``settings``) import without
torch; the model on first use."""

from ..lazy import lazy_exports

_EXPORTS = {"WinCLIP": ".model", "WinCLIPFeatures": ".model"}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
