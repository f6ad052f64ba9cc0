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
    assert set(yaml.safe_load(out.read_text())) == {"model", "loss", "train", "eval", "data"}


@pytest.mark.parametrize("bad", ["train.epochz=3", "train.epochs=three", "train=1", "epochs"])
def test_bad_overrides_fail_with_the_key(tmp_path, capsys, bad):
    out = tmp_path / "run_config.yaml"
    assert main(["run-config", "tiny", "--set", bad, "--out", str(out)]) == 2
    assert not out.exists()
    assert bad.split("=")[0].split(".")[-1] in capsys.readouterr().err
