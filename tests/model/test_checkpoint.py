"""Checkpoints hold only the learnable state and the config; they rebuild the identical model."""

import dataclasses
from pathlib import Path

import pytest
import torch

from wmoe_clip.config import load_config
from wmoe_clip.errors import WMoEError
from wmoe_clip.model import build_model, load_checkpoint, read_checkpoint, save_checkpoint
from wmoe_clip.model.checkpoint import FORMAT_VERSION

DATA = Path(__file__).parent / "data"
# Written by the code at commit 8ea8c65 (format 1, before model.init, dwt_mode and precision existed),
# with the outputs that code computed; see data/README.md.
LEGACY = DATA / "legacy_v1_full.pt"
LEGACY_OUTPUTS = DATA / "legacy_v1_full_outputs.pt"


def test_round_trip_rebuilds_the_identical_model(build_tiny, images, tmp_path):
    model = build_tiny("full", seed=5).eval()
    with torch.no_grad():
        for p in model.learnable_parameters():
            p.add_(0.01)  # differ from a fresh initialisation
        expected = model(images)
    path = tmp_path / "model.pt"
    save_checkpoint(model, path)
    payload = torch.load(path, weights_only=True)
    assert payload["variant"] == "full" and payload["format_version"] == 4
    assert payload["method"] == payload["config"]["method"] == "wmoe_clip"
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
    assert "model.wmoe_clip.wcma.enabled: True != False" in msg
    assert "model.wmoe_clip.sa_moe.enabled: False != True" in msg
    assert "missing in checkpoint: sa_moe." in msg and "not in model: wcma." in msg


def test_not_a_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(WMoEError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(WMoEError, match="not a wmoe-clip checkpoint"):
        load_checkpoint(bad)


def _legacy_images():
    return torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))


def test_a_format_1_checkpoint_computes_what_the_code_that_wrote_it_computed():
    model = load_checkpoint(LEGACY)
    assert model.cfg.method == "wmoe_clip" and type(model).__name__ == "WMoECLIP"
    m = model.cfg.model.wmoe_clip
    assert (m.init, m.wcma.dwt_mode, model.cfg.model.precision) == ("default", "zero", "fp32")
    expected = torch.load(LEGACY_OUTPUTS, weights_only=True)
    with torch.no_grad():
        out = model(_legacy_images())
    torch.testing.assert_close(out.anomaly_map[:, ::4, ::4], expected["anomaly_map"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.global_score, expected["global_score"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.image_score, expected["image_score"], atol=1e-6, rtol=0)
    # The filled-in values matter: with today's DWT border the same weights compute other maps.
    cfg = dataclasses.replace(model.cfg, model=dataclasses.replace(model.cfg.model, wmoe_clip=dataclasses.replace(
        m, wcma=dataclasses.replace(m.wcma, dwt_mode="symmetric"))))
    symmetric = build_model(cfg).eval()
    symmetric.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(symmetric(_legacy_images()).anomaly_map[:, ::4, ::4], expected["anomaly_map"],
                                  atol=1e-4)


def test_init_default_is_the_initialisation_of_the_code_before_it():
    cfg, state = read_checkpoint(LEGACY)
    ours = load_config("tiny", "full")
    ours = dataclasses.replace(ours, model=dataclasses.replace(
        ours.model, wmoe_clip=dataclasses.replace(ours.model.wmoe_clip, init="default")))
    torch.manual_seed(0)  # the seed the fixture was built with
    fresh = build_model(ours).learnable_state_dict()
    assert fresh.keys() == state.keys()
    for name in state:
        assert torch.equal(fresh[name], state[name]), name


def test_a_format_1_checkpoint_takes_the_precision_of_its_device_rule(tmp_path):
    payload = torch.load(LEGACY, weights_only=True)
    for device, precision in (("cpu", "fp32"), ("cuda", "bf16"), ("cuda:1", "bf16")):
        payload["config"]["eval"]["device"] = device
        # Absent, or "auto" (the name of that rule in the last format-1 code); an explicit fp32 stays.
        for stored, expected in ((None, precision), ("auto", precision), ("fp32", "fp32")):
            payload["config"]["model"].pop("precision", None)
            if stored is not None:
                payload["config"]["model"]["precision"] = stored
            torch.save(payload, tmp_path / "old.pt")
            assert read_checkpoint(tmp_path / "old.pt")[0].model.precision == expected, (device, stored)


def test_a_format_1_checkpoint_does_not_load_into_a_model_of_other_settings():
    with pytest.raises(WMoEError) as err:
        load_checkpoint(LEGACY, model=build_model(load_config("tiny", "full")))
    msg = str(err.value)
    assert "model.wmoe_clip.init: 'default' != 'zero_residual'" in msg
    assert "model.wmoe_clip.wcma.dwt_mode: 'zero' != 'symmetric'" in msg


def test_an_unknown_format_version_is_refused(tmp_path):
    payload = torch.load(LEGACY, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(WMoEError, match=f"format version {FORMAT_VERSION + 1}; this wmoe-clip reads versions 1, 2, 3, 4"):
        read_checkpoint(tmp_path / "future.pt")


@pytest.mark.parametrize("name", ["v3_full", "v3_anomalyclip"])
def test_a_format_3_checkpoint_computes_what_the_code_that_wrote_it_computed(name):
    """Format 3 kept WMoE-CLIP's settings directly under ``model`` and in ``loss``, AnomalyCLIP's temperature
    in ``model.temperature``, and every method's section: they move into the method's section."""
    stored = torch.load(DATA / f"legacy_{name}.pt", weights_only=True)
    assert stored["format_version"] == 3
    model = load_checkpoint(DATA / f"legacy_{name}.pt")
    old = stored["config"]
    if model.cfg.method == "wmoe_clip":
        s = model.cfg.model.wmoe_clip
        assert s.alpha == old["model"]["alpha"] and s.loss.kl_weight == old["loss"]["kl_weight"]
        assert s.ctds.latent_dim == old["model"]["ctds"]["latent_dim"] == 32
    else:
        assert model.cfg.model.anomalyclip.temperature == old["model"]["temperature"]
    assert model.cfg.model.backbone == old["model"]["backbone"]
    expected = torch.load(DATA / f"legacy_{name}_outputs.pt", weights_only=True)
    with torch.no_grad():
        out = model(_legacy_images())
    torch.testing.assert_close(out.anomaly_map[:, ::4, ::4], expected["anomaly_map"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.global_score, expected["global_score"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.image_score, expected["image_score"], atol=1e-6, rtol=0)
