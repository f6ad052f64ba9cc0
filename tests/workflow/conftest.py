"""Hand-written results folders for the report tests (format of ARCHITECTURE.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "config" / "paper_results.yaml"

IMAGE_LEVEL = {"headct", "brainmri", "br35h"}
PIXEL_LEVEL = {"isic", "colondb", "clinicdb", "endo", "kvasir"}


def eval_json(source, target, variant, seed, image=None, pixel=None, scores=None, synthetic=False, figure=None):
    """An evaluation JSON with the given mean metrics (fractions) and per-class image scores."""
    mean = {}
    if image is not None:
        mean["image"] = {k: {"value": v, "n_classes": 1} for k, v in image.items()}
    if pixel is not None:
        mean["pixel"] = {k: {"value": v, "n_classes": 1} for k, v in pixel.items()}
    return {
        "format": "wmoe-clip/eval", "format_version": 1,
        "source": source, "target": target, "variant": variant, "seed": seed, "synthetic": synthetic,
        "dataset": {"key": target, "display_name": target, "domain": "industrial",
                    "image_metrics": image is not None, "pixel_metrics": pixel is not None},
        "per_class": {}, "mean": mean, "image_scores": scores or {},
        "counts": {}, "checkpoint": {"path": "model.pt", "sha256": "0"},
        "config": {"model": {"backbone": "wmoe-tiny-quickgelu", "image_size": 112, "pretrained": None},
                   "train": {"epochs": 2, "batch_size": 8, "lr": 0.001}},
        "train_run_id": None, "mlflow_run_id": None,
        "software": {"wmoe_clip": "0.1.0", "git_commit": "abc123", "git_dirty": False, "torch": "2.14.1"},
        "timings": {"inference_s": 1.5, "images_per_s": 10.0, "metrics_s": 0.1},
        "figure": figure,
    }


def write_eval(root: Path, data: dict) -> Path:
    path = root / "eval" / data["source"] / data["target"] / data["variant"] / f"seed{data['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def random_scores(rng, n_normal, n_anomalous, shift=1.0):
    labels = [0] * n_normal + [1] * n_anomalous
    scores = np.concatenate([rng.normal(0, 1, n_normal), rng.normal(shift, 1, n_anomalous)])
    return {"labels": labels, "scores": scores.round(3).tolist()}


@pytest.fixture
def paper_path():
    return PAPER
