"""Run-config ranges, at every entry point, before any computation."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from robustness_util import assert_one_line_error, run_cli, tree
from wmoe_clip.config import ConfigError

REPO = Path(__file__).resolve().parents[2]

# (dotted key, value, the message's key part)
OUT_OF_RANGE = [
    ("train.epochs", 0, "train.epochs must be at least 1, got 0"),
    ("train.epochs", -2, "train.epochs must be at least 1, got -2"),
    ("train.lr", 0.0, "train.lr must be positive, got 0.0"),
    ("train.lr", -0.001, "train.lr must be positive, got -0.001"),
    ("train.lr", math.nan, "train.lr must be a finite number, got nan"),
    ("train.lr", math.inf, "train.lr must be a finite number, got inf"),
    ("train.betas", [1.0, 0.999], "train.betas[0] must lie in [0, 1), got 1.0"),
    ("train.betas", [0.5, -0.1], "train.betas[1] must lie in [0, 1), got -0.1"),
    ("train.batch_size", 0, "train.batch_size must be at least 1, got 0"),
    ("train.num_workers", -1, "train.num_workers must be at least 0, got -1"),
    ("train.seed", -1, "train.seed must be at least 0, got -1"),
    ("train.device", "gpu", "train.device must be auto, cpu, mps, cuda or cuda:N, got 'gpu'"),
    ("eval.sigma", -1.0, "eval.sigma must be at least 0, got -1.0"),
    ("eval.batch_size", 0, "eval.batch_size must be at least 1, got 0"),
    ("eval.num_workers", -1, "eval.num_workers must be at least 0, got -1"),
    ("model.wmoe_clip.loss.kl_weight", -0.5, "model.wmoe_clip.loss.kl_weight must be at least 0, got -0.5"),
]
IDS = [f"{k}={v}" for k, v, _ in OUT_OF_RANGE]


def _nested(key: str, value) -> dict:
    *sections, leaf = key.split(".")
    nested = {leaf: value}
    for section in reversed(sections):
        nested = {section: nested}
    return nested


@pytest.mark.parametrize("key,value,message", OUT_OF_RANGE, ids=IDS)
def test_a_config_file_out_of_range_fails_before_training(tmp_path, capsys, monkeypatch, key, value, message):
    import wmoe_clip.model

    monkeypatch.setattr(wmoe_clip.model, "build_model", lambda cfg: pytest.fail("a model was built"))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(_nested(key, value)))
    out = tmp_path / "train"
    rc, _, err = run_cli(capsys, "train", "--config", config, "--source", "btad", "--data", tmp_path / "none",
                         "--variant", "full", "--out", out, "--no-tracking")
    line = assert_one_line_error(err, rc)
    assert f"{config}: " in line and message in line
    assert not out.exists()


@pytest.mark.parametrize("key,value,message", OUT_OF_RANGE, ids=IDS)
def test_run_config_set_out_of_range_writes_nothing(tmp_path, capsys, key, value, message):
    out = tmp_path / "run_config.yaml"
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    rc, _, err = run_cli(capsys, "run-config", "tiny", "--set", f"{key}={text}", "--out", out)
    assert message in assert_one_line_error(err, rc)
    assert not out.exists()


def test_epochs_zero_on_the_command_line(tmp_path, capsys, prepared):
    rc, _, err = run_cli(capsys, "train", "--config", "tiny", "--source", "btad", "--data", prepared("btad"),
                         "--variant", "full", "--epochs", "0", "--out", tmp_path / "t", "--no-tracking")
    assert "--epochs 0: train.epochs must be at least 1, got 0" in assert_one_line_error(err, rc)
    assert not (tmp_path / "t").exists()


def test_a_checkpoint_whose_stored_config_is_out_of_range_is_refused(tmp_path, capsys, trained, prepared):
    payload = torch.load(trained("btad") / "model.pt", weights_only=True)
    payload["config"]["train"]["epochs"] = 0
    forged = tmp_path / "model.pt"
    torch.save(payload, forged)
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", forged, "--target", "mvtec", "--data",
                         prepared("mvtec"), "--source", "btad", "--out", tmp_path / "e.json", "--no-tracking")
    line = assert_one_line_error(err, rc)
    assert f"{forged} (stored config): train.epochs must be at least 1, got 0" in line
    assert tree(tmp_path) == before


def _violation(spec: dict):
    """A value the schema property ``spec`` refuses."""
    if spec.get("type") == "array":
        item = spec["items"]
        bad = item["minimum"] - 0.5 if "minimum" in item else item["exclusiveMaximum"]
        return [bad] + [0.5] * (spec["minItems"] - 1)
    if "pattern" in spec:
        return "gpu"
    if "minimum" in spec:
        return spec["minimum"] - 1
    return spec["exclusiveMinimum"]


def test_the_workflow_schema_ranges_agree_with_the_library():
    from wmoe_clip.config import config_with_overrides

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    ranged = schema["properties"]["overrides"]["properties"]
    assert "train.epochs" in ranged and ranged["train.epochs"]["minimum"] == 1
    for key, spec in ranged.items():
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            config_with_overrides("tiny", {key: _violation(spec)}, "schema check")


@pytest.mark.parametrize("override,message", [
    ({"train.epochs": 0}, "train.epochs"),  # refused by the schema
    ({"model.wmoe_clip.sa_moe.top_k": 9}, "model.wmoe_clip.sa_moe.top_k must lie in [1, num_experts]"),  # library
])
def test_workflow_overrides_fail_when_the_dag_is_built(tmp_path, override, message):
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["overrides"] = {**config["overrides"], **override}
    config["paths"] = {k: str(tmp_path / k) for k in config["paths"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--dry-run", "--configfile", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert "Job stats" not in proc.stdout  # no job was planned, let alone run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
