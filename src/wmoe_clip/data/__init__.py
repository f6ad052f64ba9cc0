"""Datasets: the registry of the 14 benchmarks, download, conversion to meta.json, stand-ins and the loader."""

__all__ = ["AnomalyDataset"]


def __getattr__(name: str):
    # Lazy, so that the registry and converters do not pay for importing torch and open_clip.
    if name == "AnomalyDataset":
        from .dataset import AnomalyDataset

        return AnomalyDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
