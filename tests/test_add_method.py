"""Adding a method is one folder and one registry line: a contributor's throwaway method, written into a
copy of the package with nothing else edited, trains, evaluates, shows up in the report and in the
workflow's DAG.

The ``added_method`` fixture builds that copy once; a test of another entry point (the workflow, say)
runs its commands with ``added_method.env``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from wmoe_clip.data.prepare import prepare
from wmoe_clip.data.synth import generate

REPO = Path(__file__).resolve().parent.parent
SOURCE, TARGET = "headct", "btad"

# The method's folder, as a contributor writes it: settings (torch-free), a model, a shipped run config.
DUMMY = {
    "__init__.py": '''"""A throwaway method: how far each patch token lies from its image's mean token."""
''',
    "settings.py": '''"""The settings of the dummy method, the run config section ``model.dummy``."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    scale: float = 4.0  # initial slope of the sigmoid over the distance


def problems(cfg):
    return [] if cfg.model.dummy.scale > 0 else ["model.dummy.scale must be positive"]
''',
    "model.py": '''"""Map: sigmoid(a * (1 - cos(patch, mean patch)) + b) per layer, a and b learned; score: its max."""

import torch
import torch.nn.functional as F
from torch import nn

from ..base import FrozenBackboneModel, ModelOutput


class Dummy(FrozenBackboneModel):
    def __init__(self, cfg, backbone=None):
        super().__init__(cfg, backbone)
        self.scale = nn.Parameter(torch.tensor(cfg.model.dummy.scale))
        self.shift = nn.Parameter(torch.tensor(-1.0))

    def forward_features(self, feats, classes=None):
        patches = F.normalize(feats.patch_tokens.to(self.scale.device, torch.float32), dim=-1)
        centre = F.normalize(patches.mean(dim=2, keepdim=True), dim=-1)
        probs = torch.sigmoid(self.scale * (1 - (patches * centre).sum(dim=-1)) + self.shift)
        (gh, gw), size = self.backbone.grid, self.cfg.model.image_size
        maps = F.interpolate(probs.reshape(probs.shape[0], -1, gh, gw), size=(size, size), mode="bilinear",
                             align_corners=False)
        score = maps.mean(dim=1).flatten(1).amax(dim=1)
        return ModelOutput(maps, maps.mean(dim=1), score, score)

    def loss(self, out, labels, masks):
        target = labels.to(out.global_score.device, torch.float32)
        return {"total": F.binary_cross_entropy(out.global_score.clamp(1e-6, 1 - 1e-6), target)}
''',
    "configs/tiny_dummy.yaml": '''method: dummy
model:
  backbone: wmoe-tiny-quickgelu
  pretrained: null
  image_size: 112
  feature_layers: [1, 2, 3, 4]
  precision: fp32
train: {epochs: 1, batch_size: 8, num_workers: 0}
eval: {batch_size: 8, sigma: 1.0, num_workers: 0, device: cpu}
''',
}
REGISTRY_LINE = ('        MethodSpec("dummy", "Dummy Scorer", ".dummy", trains=True, model="model:Dummy"),\n')


@dataclass
class AddedMethod:
    src: Path  # the copied package root (its src/ folder), with the method added
    env: dict[str, str]  # the environment that runs the copy
    data: dict[str, Path]  # prepared stand-ins by dataset key

    def wmoe_clip(self, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        script = Path(sys.executable).parent / "wmoe-clip"
        return subprocess.run([str(script), *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                              timeout=600)


@pytest.fixture(scope="module")
def added_method(tmp_path_factory) -> AddedMethod:
    root = tmp_path_factory.mktemp("contributor")
    src = root / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    folder = src / "wmoe_clip" / "model" / "dummy"
    for name, text in DUMMY.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    registry = src / "wmoe_clip" / "model" / "registry.py"
    lines = registry.read_text().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if line.lstrip().startswith("MethodSpec("))
    # After the last entry, which may run over several lines: before the line that closes the table.
    end = next(i for i in range(last, len(lines)) if lines[i].rstrip() == "    )")
    registry.write_text("".join(lines[:end] + [REGISTRY_LINE] + lines[end:]))
    data = {}
    for key in (SOURCE, TARGET):
        generate(key, root / "raw" / key, size=2, seed=0)
        prepare(key, root / "raw" / key, root / "prepared" / key, progress=False)
        data[key] = root / "prepared" / key
    env = {**os.environ, "PYTHONPATH": str(src), "WMOE_CLIP_CACHE_DIR": str(root / "cache")}
    return AddedMethod(src, env, data)


@pytest.mark.slow  # three commands in fresh interpreters
def test_an_added_method_trains_evaluates_and_is_reported(added_method, tmp_path):
    results = tmp_path / "results"
    run = results / "train" / SOURCE / "dummy" / "seed0"
    done = added_method.wmoe_clip("train", "--config", "tiny_dummy", "--source", SOURCE, "--data",
                                  str(added_method.data[SOURCE]), "--out", str(run), "--no-tracking", "--quiet",
                                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads((run / "run.json").read_text())
    assert (record["method"], record["variant"]) == ("dummy", "dummy")
    assert record["config"]["model"]["dummy"] == {"scale": 4.0}

    out = results / "eval" / SOURCE / TARGET / "dummy" / "seed0.json"
    done = added_method.wmoe_clip("evaluate", "--checkpoint", str(run / "model.pt"), "--target", TARGET, "--data",
                                  str(added_method.data[TARGET]), "--out", str(out), "--no-tracking", "--quiet",
                                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert (doc["method"], doc["source"], doc["target"]) == ("dummy", SOURCE, TARGET)
    assert set(doc["per_class"]) == {"01", "02", "03"}

    done = added_method.wmoe_clip("report", "--results", str(results), "--out", str(tmp_path / "report"),
                                  "--paper", str(REPO / "config" / "paper_results.yaml"), "--resamples", "10",
                                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Dummy Scorer" in (tmp_path / "report" / "index.html").read_text()


def test_an_added_method_is_a_baseline_of_the_workflow(added_method):
    # The demo with the method as its only baseline: its run config, a training on each source of
    # Table 1 and an evaluation on each Table 1 cell (VisA-trained on the 13 others, MVTec-trained on
    # VisA); not on the demo's custom target, which only the main method's models see.
    methods = "methods={main: wmoe_clip, baselines: [dummy], configs: {dummy: {base: tiny_dummy}}}"
    snakemake = Path(sys.executable).parent / "snakemake"
    done = subprocess.run([str(snakemake), "--dry-run", "--detailed-summary", "--configfile", "config/demo.yaml",
                           "--config", methods], cwd=REPO, env=added_method.env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("output_file\t"))
    outputs = {line.split("\t")[0] for line in lines[header + 1:] if "\t" in line}
    ours = {p for p in outputs if "/dummy" in p}
    table1 = [("visa", t) for t in ("mvtec", "btad", "ksdd2", "dagm", "dtd", "headct", "brainmri", "br35h", "isic",
                                    "colondb", "clinicdb", "endo", "kvasir")] + [("mvtec", "visa")]
    assert ours == ({"results/demo/run_config/dummy.yaml"}
                    | {f"results/demo/train/{s}/dummy/seed0/{f}" for s in ("visa", "mvtec")
                       for f in ("model.pt", "history.json", "run.json")}
                    | {f"results/demo/eval/{s}/{t}/dummy/seed0.{ext}" for s, t in table1 for ext in ("json", "png")})


def test_the_package_itself_is_untouched(added_method):
    """The method exists in the copy only: the repository's registry does not know it."""
    from wmoe_clip.model.registry import METHODS

    assert "dummy" not in METHODS
    assert (added_method.src / "wmoe_clip" / "model" / "dummy" / "settings.py").is_file()
