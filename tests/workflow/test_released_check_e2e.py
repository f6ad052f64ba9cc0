"""The released-checkpoint target end to end on synthetic data: two checkpoints in the AnomalyCLIP
authors' format (their key names and shapes, tiny widths) placed by hand where the workflow looks for
them, then `snakemake released_check`: imported, evaluated with no training on every target (each by
the checkpoint its own paper's protocol uses there) and reported beside AnomalyCLIP's own table and,
class by class, its official logs."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

from snakemake_util import snakemake
from tests.model.test_anomalyclip_checkpoint import their_state_dict
from wmoe_clip.config import load_config
from wmoe_clip.model import build_model

pytestmark = pytest.mark.slow

# Repository path below checkpoints/ -> the dataset it was trained on (AnomalyCLIP's test.sh).
RELEASES = {"9_12_4_multiscale/epoch_15.pth": "visa", "9_12_4_multiscale_visa/epoch_15.pth": "mvtec"}
# AnomalyCLIP's own tables, image AUROC: MVTec AD (VisA-trained), VisA and HeadCT (MVTec-trained).
PUBLISHED = {"mvtec": 91.5, "visa": 82.1, "headct": 93.4}
# Its released logs, pixel AUROC of one class per dataset: carpet (MVTec AD), candle (VisA).
OFFICIAL = {"mvtec": ("carpet", 98.8), "visa": ("candle", 98.8)}
NAMES = {"mvtec": "MVTec-AD", "visa": "VisA", "headct": "HeadCT"}


def _config(tmp: Path) -> Path:
    config = {
        "run": "released",
        "paths": {k: str(tmp / k) for k in ("resources", "results", "reports", "logs")},
        "data_source": "synth",
        "strict_counts": False,
        "synth_size": 3,
        "model_config": "tiny",
        "overrides": {"eval.num_workers": 0, "eval.figure_samples": 2},
        # The checkpoints are placed by hand (their tiny widths are not the released files' bytes).
        "weights": {"download": False},
        "methods": {"configs": {"anomalyclip": {"base": "tiny_anomalyclip"}}},
        "sources": ["visa", "mvtec"],
        "targets": {"visa": ["mvtec", "headct"], "mvtec": ["visa"]},
        "mlflow": {"enabled": False},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_released_check_target_end_to_end(tmp_path):
    torch.manual_seed(0)
    # The run config the workflow imports with: tiny_anomalyclip, whose backbone_seed fixes the CLIP weights.
    reference = build_model(load_config("tiny_anomalyclip"))
    for i, release in enumerate(RELEASES):
        state = their_state_dict(64, token_embedding=reference.backbone.clip.token_embedding, seed=10 + i)
        assert state["ctx_pos"].shape == (1, 1, 12, 64) and state["compound_prompt_projections.0.weight"].shape == (896, 64)
        path = tmp_path / "resources" / "weights" / "anomalyclip" / release
        path.parent.mkdir(parents=True)
        torch.save({"prompt_learner": state}, path)

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    snakemake("released_check", "--configfile", str(_config(tmp_path)), "--cores", "2",
              "--set-threads", "evaluate=1", "--set-resources", "evaluate:gpu=0")

    results, seed = tmp_path / "results", load_config("tiny_anomalyclip").train.seed
    # No training: the imported checkpoints and the three evaluations, nothing else.
    assert not (results / "train").exists()
    assert sorted(p.relative_to(results).as_posix() for p in results.glob("imported/*/*/model.pt")) == [
        "imported/mvtec/anomalyclip_released/model.pt", "imported/visa/anomalyclip_released/model.pt"]
    evals = sorted(p.relative_to(results / "eval").as_posix() for p in results.glob("eval/*/*/*/*.json"))
    assert evals == [f"mvtec/headct/anomalyclip_released/seed{seed}.json",
                     f"mvtec/visa/anomalyclip_released/seed{seed}.json",
                     f"visa/mvtec/anomalyclip_released/seed{seed}.json"]
    docs = {}
    for name in evals:
        doc = json.loads((results / "eval" / name).read_text())
        source, target = name.split("/")[:2]
        assert (doc["method"], doc["variant"], doc["source"], doc["target"]) == (
            "anomalyclip", "anomalyclip_released", source, target)
        docs[target] = doc

    html = (tmp_path / "reports" / "released_check" / "index.html").read_text()
    table1 = (tmp_path / "reports" / "released_check" / "table1.tex").read_text()
    assert "AnomalyCLIP (released checkpoint)" in html
    # Every cell beside AnomalyCLIP's own table, with Δ (the protocols match): published, ours, Δ.
    for target, published in PUBLISHED.items():
        ours = 100 * docs[target]["mean"]["image"]["auroc"]["value"]
        line = next(line for line in table1.splitlines() if line.startswith(f"{NAMES[target]} & AUROC"))
        cells = [c.strip() for c in line.rstrip("\\ ").split("&")]
        delta = f"{ours - published:+.1f}".replace("-", "$-$")
        assert cells[-3:] == [f"{published:.1f}", f"{ours:.1f}", delta], line
    # Class by class beside the official logs, on MVTec AD and VisA.
    for target, (cls, official) in OFFICIAL.items():
        source = docs[target]["source"]
        start = html.index(f"<summary>{NAMES[target]} — AnomalyCLIP (released checkpoint), trained on {source}</summary>")
        section = html[start:html.index("</details>", start)]
        row = re.search(rf"<tr><td>{cls}</td>(.*?)</tr>", section).group(1)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        ours = 100 * docs[target]["per_class"][cls]["pixel"]["auroc"]
        assert cells[:3] == [f"{official:.1f}", f"{ours:.1f}", f"{ours - official:+.1f}".replace("-", "−")]
