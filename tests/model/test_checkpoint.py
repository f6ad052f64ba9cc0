"""Checkpoints hold only the learnable state and the config; they rebuild the identical model."""

import pytest
import torch

from wmoe_clip.errors import WMoEError
from wmoe_clip.model import load_checkpoint, save_checkpoint


def test_round_trip_rebuilds_the_identical_model(build_tiny, images, tmp_path):
    model = build_tiny("full", seed=5).eval()
    with torch.no_grad():
        for p in model.learnable_parameters():
            p.add_(0.01)  # differ from a fresh initialisation
        expected = model(images)
    path = tmp_path / "model.pt"
    save_checkpoint(model, path)
    payload = torch.load(path, weights_only=True)
    assert payload["variant"] == "full" and payload["format_version"] == 1
    assert not any(k.startswith("backbone.") for k in payload["state"])
    assert set(payload["state"]) == {n for n, _ in model.learnable_named_parameters()}
    torch.manual_seed(123)  # a different RNG state must not matter
    loaded = load_checkpoint(path, map_location="cpu")
    assert not loaded.training
    with torch.no_grad():
        got = loaded(images)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map, rtol=0, atol=0)
    torch.testing.assert_close(got.image_score, expected.image_score, rtol=0, atol=0)
    assert not list(tmp_path.glob(".tmp-*"))


def test_loading_into_another_variant_names_what_differs(build_tiny, tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(build_tiny("ctds_wcma"), path)
    other = build_tiny("ctds_samoe")
    with pytest.raises(WMoEError) as err:
        load_checkpoint(path, model=other)
    msg = str(err.value)
    assert "'ctds_wcma'" in msg and "'ctds_samoe'" in msg
    assert "model.wcma.enabled: True != False" in msg and "model.sa_moe.enabled: False != True" in msg
    assert "missing in checkpoint: sa_moe." in msg and "not in model: wcma." in msg


def test_not_a_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(WMoEError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(WMoEError, match="not a wmoe-clip checkpoint"):
        load_checkpoint(bad)
