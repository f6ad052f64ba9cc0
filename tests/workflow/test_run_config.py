"""`wmoe-clip run-config`: a shipped config plus dotted overrides, validated and fully written."""

from __future__ import annotations

import pytest
import yaml

from wmoe_clip.cli import main
from wmoe_clip.config import load_config


def test_overrides_land_in_the_resolved_config(tmp_path):
    out = tmp_path / "run_config.yaml"
    assert main(["run-config", "tiny", "--set", "train.epochs=3", "--set", "model.pretrained=w/vit.pt",
                 "--set", "train.betas=[0.9, 0.99]", "--out", str(out)]) == 0
    cfg = load_config(out)
    assert cfg.train.epochs == 3 and cfg.model.pretrained == "w/vit.pt" and cfg.train.betas == (0.9, 0.99)
    # Everything else is the shipped tiny config, written out in full.
    tiny = load_config("tiny")
    assert cfg.model.backbone == tiny.model.backbone and cfg.eval == tiny.eval
    written = yaml.safe_load(out.read_text())
    assert set(written) == {"method", "model", "train", "eval", "data"}
    assert "wmoe_clip" in written["model"] and not {"anomalyclip", "clip"} & set(written["model"])


@pytest.mark.parametrize("bad", ["train.epochz=3", "train.epochs=three", "train=1", "epochs"])
def test_bad_overrides_fail_with_the_key(tmp_path, capsys, bad):
    out = tmp_path / "run_config.yaml"
    assert main(["run-config", "tiny", "--set", bad, "--out", str(out)]) == 2
    assert not out.exists()
    assert bad.split("=")[0].split(".")[-1] in capsys.readouterr().err


def test_overrides_from_a_params_file_nested_or_dotted_then_set(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"run_config": {"set": {
        "train": {"epochs": 4, "betas": [0.8, 0.9], "feature_cache": False}, "model.pretrained": "w.pt"}}}))
    out = tmp_path / "run_config.yaml"
    assert main(["run-config", "tiny", "--overrides", f"{params}:run_config.set", "--set", "train.epochs=5",
                 "--out", str(out)]) == 0
    cfg = load_config(out)
    # --set comes last and wins; everything else is the file's.
    assert (cfg.train.epochs, cfg.train.betas, cfg.train.feature_cache, cfg.model.pretrained) == (5, (0.8, 0.9), False, "w.pt")
    assert out.read_text().startswith(f"# Resolved run config: tiny --overrides {params}:run_config.set --set train.epochs=5")


@pytest.mark.parametrize(("content", "key", "message"), [
    ({"run_config": {}}, "run_config.set", "has no key run_config.set"),
    ({"set": [1, 2]}, "set", "expected a mapping"),
    ({"set": {"train": {"epochz": 1}}}, "set", "epochz"),
])
def test_bad_overrides_file_fails_naming_it(tmp_path, capsys, content, key, message):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(content))
    out = tmp_path / "run_config.yaml"
    assert main(["run-config", "tiny", "--overrides", f"{params}:{key}", "--out", str(out)]) == 2
    assert not out.exists() and message in capsys.readouterr().err
