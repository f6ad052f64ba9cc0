"""Datasets: the registry of the benchmarks, one module per dataset (layout, converter, stand-in), download,
conversion to meta.json and the loader."""

__all__ = ["AnomalyDataset"]


def __getattr__(name: str):
    # Lazy, so that the registry and dataset modules do not pay for importing torch and open_clip.
    if name == "AnomalyDataset":
        from .dataset import AnomalyDataset

        return AnomalyDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
