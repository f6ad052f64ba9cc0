"""Adding a dataset as a contributor would: one module and one registry entry, no other file edited.

The package is copied, the dataset added to the copy, and the copy runs the whole path of a dataset
from the command line: synth (its stand-in), prepare, evaluate (plain CLIP on the tiny backbone, which
does not train) and report, whose page names the dataset by its display name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wmoe_clip.cli import main
from wmoe_clip.data import registry

REPO = Path(__file__).resolve().parents[2]

MODULE = '''\
"""Widget-Inspect: ``<cls>/test/{good,defect}/<n>.png``, masks ``<cls>/ground_truth/defect/<n>_mask.png``."""

from ..convert import Context, Layout, Splits, defect_folder_dataset
from ..synth.writer import Shape, Writer, write_defect_folders

LAYOUT = Layout(class_folders=True, root_names=("widgets",))
SHAPE = Shape(height=(48, 56), width=(48, 56))


def convert(ctx: Context) -> Splits:
    return defect_folder_dataset(ctx, normal="good", mask_suffixes=("_mask",))


def write(w: Writer, size: int) -> None:
    write_defect_folders(w, size, "good", lambda _: "defect", lambda i: f"{i:03d}",
                         lambda c, i: "png", lambda c, i: "{stem}_mask.png", prefix="widgets/", train=0)
'''

ENTRY = '''
widgets:
  display_name: Widget-Inspect
  domain: industrial
  image_metrics: true
  pixel_metrics: true
  classes:
    gear: [2, 2]
    spring: [2, 2]
  licence: CC0
  homepage: https://example.org/widgets
  description: test split, <cls>/test/{good,defect} with masks <cls>/ground_truth/defect/<n>_mask.png
  download:
    kind: manual
    files: []
    manual: Copy the widgets folder into RAW_DIR (e.g. resources/raw/widgets).
  citation: Doe, "Widget-Inspect", 2026.
'''

# Runs in the copy: every step through the CLI entry point, one interpreter for all of them.
SCRIPT = '''
import sys
import wmoe_clip
from wmoe_clip.cli import main

assert wmoe_clip.__file__.startswith(sys.argv[1]), wmoe_clip.__file__
work, paper = sys.argv[2], sys.argv[3]
steps = [
    ["synth", "widgets", "--dest", f"{work}/raw", "--size", "4"],
    ["prepare", "widgets", "--raw", f"{work}/raw", "--out", f"{work}/prepared", "--strict"],
    ["run-config", "tiny", "--set", "method=clip", "--out", f"{work}/clip.yaml"],
    ["evaluate", "--config", f"{work}/clip.yaml", "--target", "widgets", "--data", f"{work}/prepared",
     "--out", f"{work}/results/eval/none/widgets/clip/seed0.json", "--no-tracking", "--quiet"],
    ["report", "--results", f"{work}/results", "--out", f"{work}/report", "--paper", paper, "--resamples", "10"],
]
for step in steps:
    code = main(step)
    assert code == 0, (step, code)
'''


def test_a_dataset_is_one_module_and_one_registry_entry(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    data = src / "wmoe_clip" / "data"
    (data / "datasets" / "widgets.py").write_text(MODULE)
    with open(data / "registry.yaml", "a", encoding="utf-8") as f:
        f.write(ENTRY)

    env = {**os.environ, "PYTHONPATH": str(src)}
    work = tmp_path / "work"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(src), str(work), str(REPO / "config" / "paper_results.yaml")],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # What synth wrote is what prepare found: 2 normal and 2 anomalous test images in each class.
    meta = json.loads((work / "prepared" / "meta.json").read_text())
    assert meta["dataset"] == "widgets" and meta["protocol"] is None
    assert {cls: sorted(r["anomaly"] for r in recs) for cls, recs in meta["test"].items()} == {
        "gear": [0, 0, 1, 1], "spring": [0, 0, 1, 1]}
    assert all(r["mask_path"].endswith("_mask.png") for recs in meta["test"].values() for r in recs if r["anomaly"])
    doc = json.loads((work / "results" / "eval" / "none" / "widgets" / "clip" / "seed0.json").read_text())
    assert doc["dataset"]["display_name"] == "Widget-Inspect" and set(doc["per_class"]) == {"gear", "spring"}
    # The report's table of datasets outside the paper lists it by name, as the tables of the paper do not.
    html = (work / "report" / "index.html").read_text()
    section = html[html.index('<h2 id="custom">'):]
    assert "<td>Widget-Inspect</td>" in section
    assert "Widget-Inspect" not in (work / "report" / "table1.tex").read_text()


@pytest.mark.parametrize("command", ["download", "synth", "prepare"])
def test_the_commands_list_the_datasets_of_the_registry(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no line wrapping (it may break a name at its hyphen)
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ", ".join(registry.keys()) in text
    if command != "download":
        assert "ksdd2: bayes-pfl, official, official-balanced; dagm: bayes-pfl, kaggle" in text
