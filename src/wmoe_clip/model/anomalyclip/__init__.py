"""AnomalyCLIP (Zhou et al., ICLR 2024) as a method on the shared frozen backbone, and the import of the
authors' released checkpoints. Its settings (``settings``) import without torch; the rest on first use."""

from ..lazy import lazy_exports

_EXPORTS = {
    "AnomalyCLIP": ".model",
    "import_anomalyclip": ".checkpoint",
    "load_anomalyclip_checkpoint": ".checkpoint",
    "read_anomalyclip_checkpoint": ".checkpoint",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
