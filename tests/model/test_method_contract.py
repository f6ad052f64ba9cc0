"""What every registered method must do, checked for each entry of the registry: a method added with its
folder and one registry line is covered without a test of its own.

Each method runs on the tiny backbone: the shipped config ``tiny`` when it is the method's, else the
method's own ``tiny_<name>`` config if its folder ships one, else ``tiny`` with the method's default
settings.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

import jsonschema
import pytest
import torch
import yaml

from wmoe_clip.config import load_config, shipped_configs
from wmoe_clip.data.prepare import prepare
from wmoe_clip.data.synth import generate
from wmoe_clip.engine.evaluate import evaluate
from wmoe_clip.model import build_model, load_checkpoint, save_checkpoint
from wmoe_clip.model.registry import METHODS

SCHEMA = json.loads(resources.files("wmoe_clip").joinpath("schemas/eval.schema.json").read_text())
TARGET = "btad"  # three classes, image and pixel metrics: a small synthetic target
CLASSES = ["01", "02", "03", "01"]


def contract_config(name: str):
    """The tiny run config of method ``name`` (the module docstring says which), on the CPU."""
    tiny = load_config("tiny")
    if tiny.method == name:
        cfg = tiny
    elif f"tiny_{name}" in shipped_configs():
        cfg = load_config(f"tiny_{name}")
    else:
        cfg = tiny.for_method(name)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cpu"),
                               eval=dataclasses.replace(cfg.eval, device="cpu"))


def _build(name: str, seed: int = 0, variant: str | None = None):
    cfg = contract_config(name)
    torch.manual_seed(seed)
    return build_model(cfg.with_variant(variant) if variant else cfg)


def _perturbed(model):
    """``model`` with every learnable parameter moved off its initialisation (zero layers included)."""
    with torch.no_grad():
        for i, p in enumerate(model.learnable_parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
    return model


@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, 112, 112, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    base = tmp_path_factory.mktemp(TARGET)
    generate(TARGET, base / "raw", size=2, seed=0)
    prepare(TARGET, base / "raw", base / "prepared", progress=False)
    return base / "prepared"


@pytest.mark.parametrize("name", list(METHODS))
def test_forward_gives_maps_and_scores_of_the_input_size(name, images):
    model = _build(name).eval()
    with torch.no_grad():
        out = model(images, CLASSES)
    b, s = images.shape[0], images.shape[-1]
    assert out.layer_maps.dim() == 4 and out.layer_maps.shape[0] == b and out.layer_maps.shape[2:] == (s, s)
    assert out.anomaly_map.shape == (b, s, s) and out.global_score.shape == out.image_score.shape == (b,)
    for t in (out.layer_maps, out.anomaly_map, out.global_score, out.image_score):
        assert torch.isfinite(t).all()
    assert out.global_score.min() >= 0 and out.global_score.max() <= 1
    smoothed = out.anomaly_map.clone()
    assert model.eval_image_score(out.global_score, smoothed).shape == (b,)


@pytest.mark.parametrize("name", list(METHODS))
def test_a_method_that_trains_has_a_finite_loss_whose_gradient_reaches_its_parameters(name, images):
    model = _build(name).train()
    params = dict(model.learnable_named_parameters())
    if not METHODS[name].trains:
        assert not params  # nothing learnable, nothing to train
        return
    assert params
    masks = torch.zeros(4, 112, 112)
    masks[1, 20:60, 30:70] = 1
    out = model(images, CLASSES)
    terms = model.loss(out, torch.tensor([0, 1, 0, 0]), masks)
    assert "total" in terms and all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    assert all(p.grad is not None for p in params.values())
    assert any(p.grad.abs().sum() > 0 for p in params.values())
    # The frozen backbone stays frozen.
    assert all(p.grad is None for p in model.backbone.parameters())


@pytest.mark.parametrize("name", list(METHODS))
def test_a_checkpoint_rebuilds_the_model_with_equal_outputs(name, images, tmp_path):
    model = _perturbed(_build(name, seed=3)).eval()
    with torch.no_grad():
        expected = model(images, CLASSES)
    save_checkpoint(model, tmp_path / "model.pt")
    torch.manual_seed(99)
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert type(loaded) is type(model) and loaded.cfg == model.cfg
    with torch.no_grad():
        got = loaded(images, CLASSES)
    for field in ("layer_maps", "anomaly_map", "global_score", "image_score"):
        torch.testing.assert_close(getattr(got, field), getattr(expected, field), rtol=0, atol=0, msg=field)


@pytest.mark.parametrize("name", list(METHODS))
def test_its_evaluation_follows_the_eval_schema(name, target, tmp_path):
    model = _build(name)
    out = tmp_path / "eval.json"
    if METHODS[name].trains:
        save_checkpoint(model, tmp_path / "model.pt")
        doc = evaluate(tmp_path / "model.pt", TARGET, target, out, progress=False)
    else:
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(model.cfg.to_dict()))
        doc = evaluate(None, TARGET, target, out, config=config, progress=False)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert json.loads(out.read_text()) == doc and doc["method"] == name
    assert set(doc["per_class"]) == {"01", "02", "03"}


@pytest.mark.parametrize("name", [n for n, spec in METHODS.items() if spec.variants])
def test_every_variant_starts_as_the_same_model(name, images):
    """A method's variants are settings of one model: built from the same seed, they compute the same
    maps and scores at initialisation (WMoE-CLIP's modules start at the identity)."""
    outputs = {}
    for variant in METHODS[name].variants:
        with torch.no_grad():
            outputs[variant] = _build(name, seed=4, variant=variant).eval()(images, CLASSES)
    first, *others = outputs
    for variant in others:
        for field in ("layer_maps", "anomaly_map", "global_score", "image_score"):
            torch.testing.assert_close(getattr(outputs[variant], field), getattr(outputs[first], field),
                                       atol=1e-6, rtol=0, msg=f"{variant} {field}")
