"""The released-checkpoint check end to end on synthetic data: checkpoints in the authors' format (their
key names and shapes, tiny widths) imported, evaluated under the run name anomalyclip_released, and
reported beside AnomalyCLIP's own table and, per class, beside the official logs of its releases."""

import json
import re
from pathlib import Path

import torch

from tests.model.test_anomalyclip_checkpoint import their_state_dict
from wmoe_clip.cli import main
from wmoe_clip.config import load_config
from wmoe_clip.model import build_model
from wmoe_clip.report import build_report, load_paper_results, load_results, table1

PAPER = Path(__file__).resolve().parents[2] / "config" / "paper_results.yaml"
# (trained on, evaluated on), as the two released checkpoints; their published image AUROC and the
# released logs' carpet (MVTec AD) / candle (VisA) pixel AUROC.
RELEASES = {("visa", "mvtec"): (91.5, "carpet", 98.8), ("mvtec", "visa"): (82.1, "candle", 98.8)}


def _rows(table):
    names, col = [], 0
    for label, span in table.header_groups[-1]:
        names += [f"{label}/{c}" if label else c for c in table.columns[col:col + span]]
        col += span
    current = None
    for row in table.rows:
        current = row[0] or current
        yield current, dict(zip(names, row))


def test_released_checkpoints_import_evaluate_and_report_beside_the_official_numbers(make_prepared, tmp_path):
    torch.manual_seed(0)
    reference = build_model(load_config("tiny_anomalyclip"))
    results = tmp_path / "results"
    for i, (source, target) in enumerate(RELEASES):
        state = their_state_dict(64, token_embedding=reference.backbone.clip.token_embedding, seed=10 + i)
        assert state["ctx_pos"].shape == (1, 1, 12, 64) and state["compound_prompt_projections.0.weight"].shape == (896, 64)
        theirs = tmp_path / f"release{i}" / "epoch_15.pth"
        theirs.parent.mkdir()
        torch.save({"prompt_learner": state}, theirs)
        ours = tmp_path / f"release{i}" / "model.pt"
        assert main(["import-checkpoint", "--from", "anomalyclip", str(theirs), "--config", "tiny_anomalyclip",
                     "--out", str(ours)]) == 0
        seed = load_config("tiny_anomalyclip").train.seed
        out = results / "eval" / source / target / "anomalyclip_released" / f"seed{seed}.json"
        assert main(["evaluate", "--checkpoint", str(ours), "--source", source, "--run", "anomalyclip_released",
                     "--out", str(out), "--target", target, "--data", str(make_prepared(target, 4)),
                     "--no-tracking", "--quiet"]) == 0
        doc = json.loads(out.read_text())
        assert (doc["method"], doc["variant"], doc["source"]) == ("anomalyclip", "anomalyclip_released", source)

    paper = load_paper_results(PAPER)
    t = table1(paper, load_results(results), resamples=20)
    assert ("AnomalyCLIP (released checkpoint)", 3) in t.header_groups[-1]
    for (source, target), (published, cls, official) in RELEASES.items():
        doc = json.loads(next((results / "eval" / source / target / "anomalyclip_released").glob("*.json")).read_text())
        ours = 100 * doc["mean"]["image"]["auroc"]["value"]
        name = {"mvtec": "MVTec-AD", "visa": "VisA"}[target]
        row = next(r for d, r in _rows(t) if d == name and r["Metric"] == "AUROC" and r["Trained on"] == source)
        group = "AnomalyCLIP (released checkpoint)"
        # Its own table's cell (the release's protocol: VisA-trained on MVTec AD, MVTec-trained on VisA).
        assert row[f"{group}/Published"] == f"{published:.1f}"
        assert row[f"{group}/Δ"] == f"{ours - published:+.1f}".replace("-", "−")

    build_report(results, tmp_path / "report", PAPER, resamples=20)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "AnomalyCLIP (released checkpoint)" in html
    for (source, target), (_, cls, official) in RELEASES.items():
        doc = json.loads(next((results / "eval" / source / target / "anomalyclip_released").glob("*.json")).read_text())
        name = {"mvtec": "MVTec-AD", "visa": "VisA"}[target]
        start = html.index(f"<summary>{name} — AnomalyCLIP (released checkpoint), trained on {source}</summary>")
        section = html[start:html.index("</details>", start)]
        row = re.search(rf"<tr><td>{cls}</td>(.*?)</tr>", section).group(1)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        ours = 100 * doc["per_class"][cls]["pixel"]["auroc"]
        # Pixel AUROC: official, ours, Δ.
        assert cells[:3] == [f"{official:.1f}", f"{ours:.1f}", f"{ours - official:+.1f}".replace("-", "−")]
        assert f'title="{official:.1f}: AnomalyCLIP' in section
