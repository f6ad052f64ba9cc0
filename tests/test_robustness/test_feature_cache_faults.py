"""The feature cache under damage and full disks: a truncated file, a damaged header or overwritten bytes
are found and the entry rebuilt (never silently read); a disk too small for a build is refused before
it starts, in one line, with no temporary left; a killed build's temporary folder is removed by the
next run; a checkpoint that does not fit on the disk is one line, not a traceback."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from robustness_util import assert_one_line_error, run_cli, tree
from wmoe_clip.config import load_config
from wmoe_clip.data.dataset import AnomalyDataset
from wmoe_clip.engine.feature_cache import CachedSource, open_cache
from wmoe_clip.errors import WMoEError
from wmoe_clip.io import torch_save
from wmoe_clip.model import build_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(prepared):
    cfg = load_config("tiny")
    dataset = AnomalyDataset(prepared("btad"), "test", cfg.model.image_size, cfg.data.mask_interpolation)
    return cfg, dataset, build_model(cfg)


def _memory(cfg, fraction):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, feature_cache_memory=fraction))


def _arrays(cache: CachedSource) -> dict[str, np.ndarray]:
    return {name: np.array(np.load(cache.folder / f"{name}.npy")) for name in CachedSource.ARRAYS}


def _damage(kind: str, path):
    data = bytearray(path.read_bytes())
    if kind == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif kind == "header":
        data[10:40] = b"#" * 30  # inside the header's dict literal
        path.write_bytes(bytes(data))
    else:  # bytes overwritten in place: same size, same header
        data[-64:] = bytes(range(64))
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind,memory,verify", [
    ("truncated", 0.0, False), ("header", 0.0, False),
    ("overwritten", 1.0, False),  # read whole into memory: the digest is checked on the way
    ("overwritten", 0.0, True),   # memory-mapped: checked on demand
])
def test_a_damaged_cache_file_is_found_and_the_entry_rebuilt(kind, memory, verify, setup, prepared, tmp_path, capsys):
    cfg, dataset, model = setup
    data_before = tree(prepared("btad").parent)
    first = open_cache(cfg, dataset, model, CPU, tmp_path, batch_size=3)
    good = _arrays(first)
    victim = first.folder / "patches.npy"
    _damage(kind, victim)
    capsys.readouterr()
    again = open_cache(_memory(cfg, memory), dataset, model, CPU, tmp_path, batch_size=3, verify=verify)
    err = capsys.readouterr().err
    assert str(victim) in err and f"rebuilding {first.folder.name}" in err
    assert again.cache == "built"
    rebuilt = _arrays(again)
    assert all(np.array_equal(rebuilt[n], good[n]) for n in good)
    assert tree(prepared("btad").parent) == data_before


def test_an_intact_cache_is_read_without_a_rebuild(setup, tmp_path, capsys):
    cfg, dataset, model = setup
    open_cache(cfg, dataset, model, CPU, tmp_path)
    capsys.readouterr()
    again = open_cache(cfg, dataset, model, CPU, tmp_path, verify=True)
    assert again.cache == "read" and "rebuilding" not in capsys.readouterr().err


def test_a_disk_too_small_for_the_cache_is_refused_before_the_build(small_disk, prepared, tmp_path, capsys):
    config = tmp_path / "cached.yaml"
    assert run_cli(capsys, "run-config", "tiny", "--set", "train.feature_cache=true", "--out", config)[0] == 0
    def files():  # the lock file stays: it serialises later builds
        return tree(prepared("btad").parent), {k: v for k, v in tree(small_disk).items() if not k.endswith(".lock")}

    before = files()
    rc, _, err = run_cli(capsys, "train", "--config", config, "--source", "btad", "--data", prepared("btad"),
                         "--out", tmp_path / "out", "--cache-dir", small_disk, "--no-tracking", "--quiet")
    line = assert_one_line_error(err, rc)
    assert f"feature cache {small_disk}/btad-" in line and "are free on its disk" in line
    assert files() == before  # no temporary left behind


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_builds_temporary_folder_is_removed_by_the_next_run(setup, tmp_path):
    cfg, dataset, model = setup
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())  # as temporaries name their host
    dead = tmp_path / f".tmp-btad-0123.{_dead_pid()}@{host}.abc"
    alive = tmp_path / f".tmp-btad-4567.{os.getpid()}@{host}.def"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "patches.npy").write_bytes(b"\0" * 1000)
    open_cache(cfg, dataset, model, CPU, tmp_path)
    assert not dead.exists() and alive.exists()


def test_a_checkpoint_that_does_not_fit_on_the_disk_is_one_error(small_disk):
    before = tree(small_disk)
    with pytest.raises(WMoEError) as info:
        torch_save({"w": torch.zeros(2**20)}, small_disk / "model.pt")
    assert str(info.value) == (f"writing {small_disk / 'model.pt'}: {small_disk / 'model.pt'}: No space left on "
                               "device (ENOSPC); the disk is full: free some space or choose another location")
    assert tree(small_disk) == before


def test_a_full_disk_during_torch_save_is_one_error_wherever_it_strikes(monkeypatch, tmp_path):
    def full(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(WMoEError, match=r"No space left on device \(ENOSPC\); the disk is full"):
        torch_save({"w": torch.zeros(4)}, tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []


def test_training_onto_a_nearly_full_disk_fails_in_one_line(small_disk, prepared, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "--config", "tiny", "--source", "btad", "--data", prepared("btad"),
                         "--out", small_disk / "out", "--cache-dir", tmp_path / "cache", "--no-tracking", "--quiet")
    line = assert_one_line_error(err, rc)
    assert "No space left on device (ENOSPC)" in line
    assert not list(small_disk.rglob(".tmp-*"))
