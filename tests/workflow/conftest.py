"""Hand-written results folders for the report tests (format of ARCHITECTURE.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from wmoe_clip.config import load_config
from wmoe_clip.model.wmoe_clip.settings import VARIANTS

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "config" / "paper_results.yaml"

IMAGE_LEVEL = {"headct", "brainmri", "br35h"}
PIXEL_LEVEL = {"isic", "colondb", "clinicdb", "endo", "kvasir"}


LEVEL_METRICS = {"image": ("auroc", "ap", "f1_max"), "pixel": ("auroc", "ap", "f1_max", "aupro", "aupro_anomalyclip")}


def eval_json(source, target, variant, seed, image=None, pixel=None, scores=None, synthetic=False, figure=None,
              encoder=None, checkpoint_sha="0" * 64):
    """A schema-valid evaluation JSON with the given mean metrics (fractions) and per-class image scores.

    Every class carries the mean values themselves, so the documented means hold. ``variant`` is the
    run name: a WMoE-CLIP variant, or a baseline's method name (``anomalyclip``, ``clip``), whose
    config here is the tiny one (the report reads its model and training settings only).
    ``encoder``: the optional encoder-pass block of the evaluation JSON, absent when None.
    """
    scores = scores or {}
    levels = {k: v for k, v in (("image", image), ("pixel", pixel)) if v is not None}
    per_class = {}
    for cls in scores or ["all"]:
        labels = scores[cls]["labels"] if cls in scores else [0, 1]
        n_anomalous = int(sum(labels))
        per_class[cls] = {"n_images": len(labels), "n_normal": len(labels) - n_anomalous,
                          "n_anomalous": n_anomalous,
                          **{lvl: {k: v.get(k) for k in LEVEL_METRICS[lvl]} for lvl, v in levels.items()}}
    mean = {lvl: {k: {"value": v, "n_classes": len(per_class)} for k, v in vals.items()}
            for lvl, vals in levels.items()}
    counts = {k: sum(r[k] for r in per_class.values()) for k in ("n_images", "n_normal", "n_anomalous")}
    return {
        "format": "wmoe-clip/eval", "format_version": 1,
        "source": source, "target": target, "variant": variant, "seed": seed, "synthetic": synthetic,
        "dataset": {"key": target, "display_name": target, "domain": "industrial",
                    "image_metrics": image is not None, "pixel_metrics": pixel is not None},
        "per_class": per_class, "mean": mean, "image_scores": scores,
        "counts": counts | {"n_classes": len(per_class)},
        "checkpoint": {"path": "model.pt", "sha256": checkpoint_sha},
        "config": load_config("tiny", variant=variant if variant in VARIANTS else "full").to_dict(),
        "train_run_id": None, "mlflow_run_id": None,
        "software": {"wmoe_clip": "0.1.0", "git_commit": "abc123", "git_dirty": False, "torch": "2.14.1"},
        "timings": {"inference_s": 1.5, "images_per_s": 10.0, "metrics_s": 0.1},
        "figure": figure,
    } | ({"encoder": encoder} if encoder is not None else {})


def write_eval(root: Path, data: dict) -> Path:
    path = root / "eval" / data["source"] / data["target"] / data["variant"] / f"seed{data['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_training(root: Path, source: str, run: str, seed: int, run_json: dict | None = None, epochs: int = 3) -> Path:
    """A training's history.json (a falling loss) and, when given, its run.json; returns its folder."""
    folder = root / "train" / source / run / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "history.json").write_text(json.dumps(
        [{"epoch": e, "loss": {"total": 2.0 / e, "global": 0.7 / e}, "time_s": 1.0} for e in range(1, epochs + 1)]))
    if run_json is not None:
        (folder / "run.json").write_text(json.dumps({"source": source, "variant": run, "seed": seed, **run_json}))
    return folder


def random_scores(rng, n_normal, n_anomalous, shift=1.0):
    labels = [0] * n_normal + [1] * n_anomalous
    scores = np.concatenate([rng.normal(0, 1, n_normal), rng.normal(shift, 1, n_anomalous)])
    return {"labels": labels, "scores": scores.round(3).tolist()}


def compile_latex(folder: Path, name: str) -> str:
    """pdflatex ``name`` in ``folder`` until longtable's column widths settle (it asks for a rerun while
    they change; an overfull line is only meaningful after that); returns the final log. Skips the
    test where pdflatex is not installed."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed: structure checked, compilation not")
    for _ in range(4):
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", name],
                              cwd=folder, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-3000:]
        log = (folder / name.replace(".tex", ".log")).read_text()
        if "Rerun LaTeX" not in log:
            return log
    raise AssertionError(f"{name}: longtable's widths did not settle in 4 runs")


@pytest.fixture
def paper_path():
    return PAPER
