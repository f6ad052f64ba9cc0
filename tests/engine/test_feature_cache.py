import dataclasses
import json
import multiprocessing
import time
import types

import numpy as np
import pytest
import torch

from wmoe_clip.config import load_config
from wmoe_clip.data.dataset import AnomalyDataset
from wmoe_clip.engine import feature_cache
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
    assert np.load(cache.folder / "patches.npy", mmap_mode="r").dtype == np.float16
    assert cache.patch_tokens.dtype == torch.float16 and len(cache) == len(dataset)
    idx = [7, 2, 10]
    (batch,) = cache.batches([idx])
    images = torch.stack([dataset[i]["image"] for i in idx])
    with torch.no_grad():
        direct = model.encode_image(images)
    torch.testing.assert_close(batch.feats.patch_tokens, direct.patch_tokens, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(batch.feats.global_token, direct.global_token, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(batch.feats.plain_tokens, direct.plain_tokens, rtol=2e-3, atol=2e-3)
    assert batch.classes == [dataset.records[i]["cls_name"] for i in idx]
    assert batch.labels.tolist() == [dataset.records[i]["anomaly"] for i in idx]
    torch.testing.assert_close(batch.masks, torch.stack([dataset[i]["mask"] for i in idx]))


def test_fp16_storage_keeps_bf16_encoder_outputs(make_prepared, tmp_path):
    # On CUDA the encoder runs in bf16 (model.precision). fp16 holds every bf16 value of magnitude 2^-17
    # to 65504 exactly (8 significant bits within fp16's 11); smaller ones land on fp16's subnormal grid,
    # off by at most half its spacing, 2^-25. So the cache costs a bf16 run nothing.
    cfg = load_config("tiny", "full")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, precision="bf16"))
    model = build_model(cfg)
    dataset = AnomalyDataset(make_prepared("btad", 4), "test", cfg.model.image_size)
    cache = open_cache(cfg, dataset, model, torch.device("cpu"), tmp_path)
    idx = list(range(len(dataset)))
    (batch,) = cache.batches([idx])
    direct = model.encode_image(torch.stack([dataset[i]["image"] for i in idx]))
    assert direct.patch_tokens.dtype == torch.bfloat16 and direct.global_token.dtype == torch.bfloat16
    torch.testing.assert_close(batch.feats.patch_tokens, direct.patch_tokens.float(), rtol=0, atol=2**-25)
    torch.testing.assert_close(batch.feats.global_token, direct.global_token.float(), rtol=0, atol=2**-25)


def _with_memory(cfg, fraction: float):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, feature_cache_memory=fraction))


def test_cache_held_in_memory_gives_the_memory_mapped_batches_exactly(setup, tmp_path):
    cfg, model, dataset = setup
    cpu = torch.device("cpu")
    mapped = open_cache(_with_memory(cfg, 0.0), dataset, model, cpu, tmp_path)
    held = open_cache(_with_memory(cfg, 1.0), dataset, model, cpu, tmp_path)
    assert held.folder == mapped.folder  # the budget is no part of the key
    assert not mapped.resident and isinstance(mapped.patch_tokens, np.memmap)
    assert held.resident
    for name in ("global_token", "patch_tokens", "plain_tokens", "masks", "labels"):
        arr = getattr(held, name)
        assert isinstance(arr, torch.Tensor) and arr.device == cpu, name
        # A copy in memory, not a view of the file.
        assert np.array_equal(arr.numpy(), np.asarray(getattr(mapped, name))), name
    plan = [[7, 2, 10], [0], list(range(len(dataset)))[::-1]]
    for a, b in zip(mapped.batches(plan), held.batches(plan), strict=True):
        assert a.indices == b.indices
        for x, y in (*zip(a.feats, b.feats), (a.masks, b.masks), (a.labels, b.labels)):
            assert x.dtype == y.dtype and torch.equal(x, y)


def test_memory_budget_decides_and_is_logged(setup, tmp_path, monkeypatch, capsys):
    cfg, model, dataset = setup
    cpu = torch.device("cpu")
    first = open_cache(_with_memory(cfg, 0.0), dataset, model, cpu, tmp_path)
    names = ("global", "patches", "plain", "masks", "labels")
    size = sum((first.folder / f"{name}.npy").stat().st_size for name in names)
    headers = len(names) * 128  # numpy's .npy header of these arrays, padded to 128 bytes
    capsys.readouterr()
    for available, resident in ((2 * (size - headers), True), (2 * (size - headers) - 2, False)):
        monkeypatch.setattr(feature_cache.psutil, "virtual_memory", lambda a=available: types.SimpleNamespace(available=a))
        cache = open_cache(_with_memory(cfg, 0.5), dataset, model, cpu, tmp_path)
        assert cache.resident is resident
        log = capsys.readouterr().err
        assert "train.feature_cache_memory 0.5" in log
        assert ("held in cpu memory" if resident else "read through memory maps") in log


def _open_and_digest(cfg, prepared, root, out, gate=None, ready=None):
    """In a child process: open the cache (building it when missing) and report what it read.

    With ``gate``, the first encoder call (the lock is held, the build under way) announces itself
    and waits until the parent lets it continue; ``ready`` is set just before opening the cache.
    """
    torch.manual_seed(0)
    model = build_model(cfg)
    dataset = AnomalyDataset(prepared, "test", cfg.model.image_size)
    encode, calls = model.encode_image, []

    def counting_encode(images):
        calls.append(len(images))
        if gate is not None and len(calls) == 1:
            gate[0].set()
            gate[1].wait(120)
        return encode(images)

    model.encode_image = counting_encode
    if ready is not None:
        ready.set()
    cache = open_cache(cfg, dataset, model, torch.device("cpu"), root, batch_size=4)
    (batch,) = cache.batches([list(range(len(cache)))])
    out.put((sum(calls), batch.feats.patch_tokens.numpy().tobytes(), batch.masks.numpy().tobytes()))


@pytest.mark.slow  # two fresh interpreters import torch
def test_a_cache_being_built_is_never_read_half_written_by_another_process(make_prepared, tmp_path):
    cfg = load_config("tiny", "full")
    prepared = make_prepared("btad", 4)
    n = len(AnomalyDataset(prepared, "test", cfg.model.image_size))
    # spawn, not fork: a forked child can inherit a lock held by one of the parent's threads.
    ctx = multiprocessing.get_context("spawn")
    building, resume, reading = ctx.Event(), ctx.Event(), ctx.Event()
    out_a, out_b = ctx.Queue(), ctx.Queue()
    builder = ctx.Process(target=_open_and_digest, args=(cfg, prepared, tmp_path, out_a, (building, resume)))
    builder.start()
    reader = ctx.Process(target=_open_and_digest, args=(cfg, prepared, tmp_path, out_b, None, reading))
    try:
        assert building.wait(180), "the builder never started encoding"
        # The builder holds the lock with a partly written temporary folder; the reader opens the
        # cache now and is given time to (wrongly) read or build before the builder goes on.
        reader.start()
        assert reading.wait(180), "the reader never started"
        time.sleep(2)
        resume.set()
        built, read = out_a.get(timeout=180), out_b.get(timeout=180)
    finally:
        resume.set()
        builder.join(60)
        if reader.pid is not None:
            reader.join(60)
    assert builder.exitcode == 0 and reader.exitcode == 0
    assert built[0] == n  # the builder encoded every image once
    assert read[0] == 0  # the reader waited and read the finished cache instead of building its own
    assert read[1:] == built[1:]


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
                                    {"precision": "bf16"}])
def test_each_backbone_option_keys_the_cache(setup, option):
    from wmoe_clip.engine.feature_cache import cache_key

    cfg, _, dataset = setup
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **option))
    assert cache_key(other, dataset) != cache_key(cfg, dataset)
