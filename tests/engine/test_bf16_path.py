"""The CUDA code path (bf16 autocast around every forward pass) exercised on the CPU.

``runtime.autocast`` is bf16 autocast on CUDA and nothing on the CPU, so the CPU tests never see
bf16 tensors. Here it is swapped for CPU bf16 autocast: training (with the feature cache built under
autocast), evaluation and prediction must run through, with float32 maps and finite results.
"""

import dataclasses
import json

import pytest
import torch
from PIL import Image

from wmoe_clip.config import load_config
from wmoe_clip.engine import runtime
from wmoe_clip.engine.evaluate import evaluate
from wmoe_clip.engine.predict import predict
from wmoe_clip.engine.train import apply_overrides, train


@pytest.fixture
def bf16_autocast(monkeypatch):
    calls = []

    def autocast(device):
        calls.append(device.type)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    monkeypatch.setattr(runtime, "autocast", autocast)
    return calls


def test_train_evaluate_and_predict_under_bf16_autocast(bf16_autocast, make_prepared, tmp_path):
    data = make_prepared("btad", 4)
    cfg = apply_overrides(load_config("tiny"), "full", seed=0, epochs=1)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, feature_cache=True))
    run = train(cfg, "btad", data, tmp_path / "train", cache_dir=tmp_path / "cache", progress=False)
    history = json.loads((tmp_path / "train" / "history.json").read_text())
    assert all(torch.isfinite(torch.tensor(v)) for v in history[0]["loss"].values())
    assert bf16_autocast, "the engine did not go through runtime.autocast"

    doc = evaluate(tmp_path / "train" / "model.pt", "btad", data, tmp_path / "eval.json", feature_cache=True,
                   cache_dir=tmp_path / "cache", progress=False, allow_same_source=True)
    assert doc["variant"] == run["variant"]
    assert all(0.0 <= s <= 1.0 for cls in doc["image_scores"].values() for s in cls["scores"])
    assert 0.0 <= doc["mean"]["pixel"]["auroc"]["value"] <= 1.0

    image = tmp_path / "x.png"
    Image.new("RGB", (50, 40), (10, 200, 30)).save(image)
    (row,) = predict(tmp_path / "train" / "model.pt", [image], tmp_path / "pred")
    assert row["error"] is None and 0.0 <= row["image_score"] <= 1.0
