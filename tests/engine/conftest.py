"""Shared fixtures: small synthetic datasets, a tmp MLflow store and one trained tiny model."""

from __future__ import annotations

import pytest

from wmoe_clip.config import load_config
from wmoe_clip.data.prepare import prepare
from wmoe_clip.data.synth import generate
from wmoe_clip.engine.tracking import Tracker, init_store
from wmoe_clip.engine.train import apply_overrides, train

# Enough images and epochs for the tiny model to transfer above chance from VisA to MVTec stand-ins.
TRANSFER_EPOCHS = 6


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    """Every engine test logs to a temporary SQLite store and caches features in a temporary folder."""
    root = tmp_path_factory.mktemp("env")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
        mp.setenv("WMOE_CLIP_CACHE_DIR", str(root / "cache"))
        init_store()
        yield root


@pytest.fixture(scope="session")
def make_prepared(tmp_path_factory):
    made = {}

    def make(key: str, size: int, seed: int = 0):
        if (key, size, seed) not in made:
            base = tmp_path_factory.mktemp(f"{key}{size}s{seed}")
            generate(key, base / "raw", size=size, seed=seed)
            prepare(key, base / "raw", base / "prepared", progress=False)
            made[key, size, seed] = base / "prepared"
        return made[key, size, seed]

    return make


@pytest.fixture(scope="session")
def trained(make_prepared, tmp_path_factory):
    """The tiny full model trained on a VisA stand-in with tracking on; its run record and folder."""
    out = tmp_path_factory.mktemp("train") / "visa" / "full" / "seed0"
    cfg = apply_overrides(load_config("tiny"), "full", seed=0, epochs=TRANSFER_EPOCHS)
    run = train(cfg, "visa", make_prepared("visa", 8), out, tracker=Tracker(), progress=False)
    return run, out
