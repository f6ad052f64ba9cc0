"""The reduced-precision paths (``model.precision: bf16 | fp16``) through the engine, on the CPU.

``model.precision`` is honoured on every device, so the CPU runs exactly the code a GPU runs: training
(with the feature cache built in that precision), evaluation and prediction must run through with
float32 maps and finite results; fp16 training goes through the loss scaler.
"""

import dataclasses
import json

import pytest
import torch
from PIL import Image

from wmoe_clip.config import load_config
from wmoe_clip.data.dataset import AnomalyDataset
from wmoe_clip.engine.evaluate import evaluate
from wmoe_clip.engine.feature_cache import cache_key
from wmoe_clip.engine.predict import predict
from wmoe_clip.engine.train import apply_overrides, train


def _cfg(precision, feature_cache):
    cfg = apply_overrides(load_config("tiny"), "full", seed=0, epochs=1)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, precision=precision),
                               train=dataclasses.replace(cfg.train, feature_cache=feature_cache))


def test_train_evaluate_and_predict_with_bf16_encoders(make_prepared, tmp_path):
    data = make_prepared("btad", 4)
    cfg = _cfg("bf16", feature_cache=True)
    run = train(cfg, "btad", data, tmp_path / "train", cache_dir=tmp_path / "cache", progress=False)
    history = json.loads((tmp_path / "train" / "history.json").read_text())
    assert all(torch.isfinite(torch.tensor(v)) for v in history[0]["loss"].values())
    assert "grad_scale" not in history[0]  # bf16 keeps fp32's range: no loss scaling
    (folder,) = (tmp_path / "cache").glob("btad-*")
    assert json.loads((folder / "key.json").read_text())["precision"] == "bf16"

    doc = evaluate(tmp_path / "train" / "model.pt", "btad", data, tmp_path / "eval.json", feature_cache=True,
                   cache_dir=tmp_path / "cache", progress=False, allow_same_source=True)
    assert doc["variant"] == run["variant"] and doc["config"]["model"]["precision"] == "bf16"
    assert all(0.0 <= s <= 1.0 for cls in doc["image_scores"].values() for s in cls["scores"])
    assert 0.0 <= doc["mean"]["pixel"]["auroc"]["value"] <= 1.0

    image = tmp_path / "x.png"
    Image.new("RGB", (50, 40), (10, 200, 30)).save(image)
    (row,) = predict(tmp_path / "train" / "model.pt", [image], tmp_path / "pred")
    assert row["error"] is None and 0.0 <= row["image_score"] <= 1.0


def test_fp16_training_scales_the_loss_and_reports_it(make_prepared, tmp_path):
    data = make_prepared("btad", 4)
    cfg = dataclasses.replace(_cfg("fp16", feature_cache=False), train=dataclasses.replace(
        _cfg("fp16", feature_cache=False).train, epochs=3, batch_size=4))
    states = []  # the resume state of each epoch (removed once model.pt is written)
    train(cfg, "btad", data, tmp_path, progress=False,
          on_epoch_end=lambda e: states.append(torch.load(next((tmp_path / "state").glob("*/epoch-*.pt")),
                                                          weights_only=True)))
    history = json.loads((tmp_path / "history.json").read_text())
    assert all(torch.isfinite(torch.tensor(v)) for h in history for v in h["loss"].values())
    # The scaler starts at 2^16 and halves after each step whose fp16 gradients overflowed (skipped);
    # it grows only after 2000 good steps.
    skipped = sum(h["skipped_steps"] for h in history)
    assert history[-1]["grad_scale"] == 2.0 ** (16 - skipped)
    assert skipped < 3 * 3  # 3 epochs of 3 steps: most steps were taken
    assert states[-1]["scaler"]["scale"] == history[-1]["grad_scale"]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_feature_cache_key_is_the_configured_precision_whatever_the_device(device, make_prepared):
    dataset = AnomalyDataset(make_prepared("btad", 4), "test", 112)
    keys = {p: cache_key(_cfg(p, feature_cache=True), dataset) for p in ("bf16", "fp16", "fp32")}
    assert {p: k["precision"] for p, k in keys.items()} == {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}
    assert len({json.dumps(k, sort_keys=True) for k in keys.values()}) == 3
