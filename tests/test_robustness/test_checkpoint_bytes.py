"""The same settings give the same checkpoint bytes: DVC and any hash-based cache see a retrained model
as unchanged, and a resumed training is indistinguishable from an uninterrupted one."""

from __future__ import annotations

import dataclasses
import zipfile

import pytest

from wmoe_clip.config import load_config
from wmoe_clip.engine.train import apply_overrides, train
from wmoe_clip.model import build_model
from wmoe_clip.model.checkpoint import save_checkpoint


class Interrupt(Exception):
    pass


def _cfg():
    cfg = apply_overrides(load_config("tiny"), "full", seed=1, epochs=2)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=4))


def test_two_saves_of_one_model_under_different_names_are_the_same_bytes(tmp_path):
    model = build_model(load_config("tiny"))
    save_checkpoint(model, tmp_path / "a.pt")
    save_checkpoint(model, tmp_path / "other-name.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other-name.pt").read_bytes()
    # No record is named after a file (the temporary one least of all).
    names = zipfile.ZipFile(tmp_path / "a.pt").namelist()
    assert all(n.startswith("archive/") for n in names), names


def test_a_resumed_training_writes_the_bytes_of_an_uninterrupted_one(prepared, tmp_path):
    data = prepared("btad")
    before = {p: p.read_bytes() for p in data.parent.rglob("*") if p.is_file()}
    train(_cfg(), "btad", data, tmp_path / "straight", progress=False)

    def stop(epoch):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(_cfg(), "btad", data, tmp_path / "resumed", on_epoch_end=stop, progress=False)
    train(_cfg(), "btad", data, tmp_path / "resumed", progress=False)
    assert (tmp_path / "straight" / "model.pt").read_bytes() == (tmp_path / "resumed" / "model.pt").read_bytes()
    assert {p: p.read_bytes() for p in data.parent.rglob("*") if p.is_file()} == before
