"""Where and how a job runs: device, precision, seeding and the provenance of the code.

* ``device: auto`` picks the first visible CUDA device (``CUDA_VISIBLE_DEVICES`` is honoured by torch
  itself), else the CPU.
* Precision is the model's: the frozen encoders run at ``model.precision`` on every device, the
  learnable modules, maps and losses in fp32 (``wmoe_clip.model``; docs/METHOD.md §6).
* The git commit and a dirty flag of the source tree travel with every result.
"""

from __future__ import annotations

import functools
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import WMoEError


def select_device(name: str = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; asking for CUDA where there is none is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise WMoEError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise WMoEError(f"device {name!r} requested but CUDA is not available; use device: auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise WMoEError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible "
                "(check CUDA_VISIBLE_DEVICES)"
            )
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers, e.g. (run seed, epoch), stable across processes."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak allocated accelerator memory since the last reset, in MiB; None on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=1)
def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the tree this package is imported from; nulls outside a git checkout.

    Untracked files do not count as dirty: result and cache folders would otherwise mark every run.
    """
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def software_info() -> dict[str, Any]:
    return {"wmoe_clip": __version__, **git_info(), "torch": torch.__version__}


def dataset_counts(dataset) -> dict[str, int]:
    """Images, normal and anomalous images, and classes of an ``AnomalyDataset``."""
    labels = [int(r["anomaly"]) for r in dataset.records]
    return {
        "n_images": len(labels),
        "n_normal": labels.count(0),
        "n_anomalous": labels.count(1),
        "n_classes": len(dataset.class_names),
    }


def run_tags(kind: str, device: torch.device, dataset, synthetic: bool, **extra: Any) -> dict[str, Any]:
    """The MLflow tags every job carries: what it is, where it ran, which code, which data."""
    sw = software_info()
    return {
        "kind": kind, **extra, "synthetic": synthetic, "device": device_description(device),
        "mlflow.source.git.commit": sw["git_commit"] or "", "git_dirty": sw["git_dirty"],
        **{f"data.{k}": v for k, v in dataset_counts(dataset).items()},
    }
