"""The methods on the frozen CLIP backbone (one folder each, listed in ``registry``), the backbone,
and checkpoints.

Names are imported on first use, so that ``wmoe_clip.model.registry`` and the methods' ``settings``
can be read without importing torch (the workflow does, when Snakemake builds its DAG).
"""

from .lazy import lazy_exports

_EXPORTS = {
    "ImageFeatures": ".base",
    "ModelOutput": ".base",
    "FrozenBackboneModel": ".base",
    "build_model": ".registry",
    "load_checkpoint": ".checkpoint",
    "read_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
    "load_model": ".source",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
