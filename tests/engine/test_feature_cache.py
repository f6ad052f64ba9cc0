import dataclasses
import json

import numpy as np
import pytest
import torch

from wmoe_clip.config import load_config
from wmoe_clip.data.dataset import AnomalyDataset
from wmoe_clip.engine.feature_cache import open_cache
from wmoe_clip.engine.train import apply_overrides, train
from wmoe_clip.model import build_model


@pytest.fixture
def setup(make_prepared):
    cfg = load_config("tiny", "full")
    torch.manual_seed(0)
    model = build_model(cfg)
    dataset = AnomalyDataset(make_prepared("btad", 4), "test", cfg.model.image_size)
    return cfg, model, dataset


def test_cache_holds_the_encoder_outputs_in_fp16_with_the_ground_truth(setup, tmp_path):
    cfg, model, dataset = setup
    cache = open_cache(cfg, dataset, model, torch.device("cpu"), tmp_path, batch_size=5)
    assert cache.patch_tokens.dtype == np.float16 and len(cache) == len(dataset)
    idx = [7, 2, 10]
    (batch,) = cache.batches([idx])
    images = torch.stack([dataset[i]["image"] for i in idx])
    with torch.no_grad():
        direct = model.encode_image(images)
    torch.testing.assert_close(batch.feats.patch_tokens, direct.patch_tokens, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(batch.feats.global_token, direct.global_token, rtol=2e-3, atol=2e-3)
    assert batch.labels.tolist() == [dataset.records[i]["anomaly"] for i in idx]
    torch.testing.assert_close(batch.masks, torch.stack([dataset[i]["mask"] for i in idx]))


def test_cache_is_reused_and_keyed_by_what_the_features_depend_on(setup, tmp_path):
    cfg, model, dataset = setup
    first = open_cache(cfg, dataset, model, torch.device("cpu"), tmp_path)
    stamp = (first.folder / "patches.npy").stat().st_mtime_ns
    # A learnable-module switch does not change the frozen features: same folder, not rebuilt.
    other_variant = open_cache(cfg.with_variant("base"), dataset, model, torch.device("cpu"), tmp_path)
    assert other_variant.folder == first.folder
    assert (first.folder / "patches.npy").stat().st_mtime_ns == stamp
    layers = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, feature_layers=(2, 4)))
    assert open_cache(layers, dataset, build_model(layers), torch.device("cpu"), tmp_path).folder != first.folder
    key = json.loads((first.folder / "key.json").read_text())
    assert key["feature_layers"] == [1, 2, 3, 4] and key["backbone"] == "wmoe-tiny-quickgelu"
    # A stale or damaged folder (key differs) is rebuilt rather than read.
    (first.folder / "key.json").write_text("{}")
    rebuilt = open_cache(cfg, dataset, model, torch.device("cpu"), tmp_path)
    assert json.loads((rebuilt.folder / "key.json").read_text()) == key


def test_cached_training_follows_the_uncached_one(make_prepared, tmp_path):
    data = make_prepared("btad", 4)
    cfg = apply_overrides(load_config("tiny"), "full", seed=0, epochs=2)
    cached = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, feature_cache=True))
    train(cfg, "btad", data, tmp_path / "plain", progress=False)
    train(cached, "btad", data, tmp_path / "cached", cache_dir=tmp_path / "cache", progress=False)
    plain = json.loads((tmp_path / "plain" / "history.json").read_text())
    fast = json.loads((tmp_path / "cached" / "history.json").read_text())
    for a, b in zip(plain, fast):
        assert b["loss"]["total"] == pytest.approx(a["loss"]["total"], rel=1e-2)


@pytest.mark.parametrize("option", [{"global_token_ln_post": False}, {"pos_embed_interpolation": "bilinear"},
                                    {"precision": "fp32"}])
def test_each_backbone_option_keys_the_cache(setup, option):
    from wmoe_clip.engine.feature_cache import cache_key

    cfg, _, dataset = setup
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **option))
    device = torch.device("cuda") if "precision" in option else torch.device("cpu")
    assert cache_key(other, dataset, device) != cache_key(cfg, dataset, device)
