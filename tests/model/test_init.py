"""docs/METHOD.md §6: with ``model.wmoe_clip.init: zero_residual`` every variant starts as CLIP (the ``base`` variant)
and still learns everywhere; ``init: default`` is PyTorch's initialisation, as before."""

import dataclasses
import re

import pytest
import torch

from wmoe_clip.config import ConfigError, config_from_dict, load_config
from wmoe_clip.model import build_model
from wmoe_clip.model.wmoe_clip.ctds import CTDS
from wmoe_clip.model.wmoe_clip.settings import SWITCHES

# The last layer of each residual branch: WCMA's output projection, each expert's output layer, P.
ZEROED = re.compile(r"^(wcma\.layers\.\d+\.cross\.o|sa_moe\.experts\.\d+\.2|ctds\.to_prompt)\.(weight|bias)$")
# Parameters whose only way to the loss goes through a zeroed layer: no gradient at step 0.
BEHIND_ZEROED = re.compile(r"^(wcma\.layers\.\d+\.(enhance|cross\.[qkv])\.|sa_moe\.(adapters|router|experts\.\d+\.0)\.)")
# Adding one vector to every key shifts all logits of a query equally: softmax makes the key bias's
# gradient analytically zero, so it only ever sees rounding.
KEY_BIAS = re.compile(r"^wcma\.layers\.\d+\.cross\.k\.bias$")


def _with_settings(cfg, **changes):
    return dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, wmoe_clip=dataclasses.replace(cfg.model.wmoe_clip, **changes)))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_every_variant_starts_as_base(mode, build_tiny, images):
    outputs = {}
    for variant in SWITCHES:
        model = build_tiny(variant, seed=4).train(mode == "train")
        torch.manual_seed(9)  # CTDS noise in training mode: P(z) = 0 whatever z is
        with torch.no_grad():
            outputs[variant] = model(images)
    base = outputs.pop("base")
    for variant, out in outputs.items():
        torch.testing.assert_close(out.layer_maps, base.layer_maps, atol=1e-6, rtol=0, msg=variant)
        torch.testing.assert_close(out.anomaly_map, base.anomaly_map, atol=1e-6, rtol=0, msg=variant)
        torch.testing.assert_close(out.global_score, base.global_score, atol=1e-6, rtol=0, msg=variant)
        torch.testing.assert_close(out.image_score, base.image_score, atol=1e-6, rtol=0, msg=variant)
    full = outputs["full"].aux
    assert torch.equal(full["g_prime"], full["g"]) and not full["prompt_shift"].any()
    torch.testing.assert_close(full["refined_text"], full["text"].unsqueeze(1).expand_as(full["refined_text"]))


def test_zero_residual_zeroes_exactly_the_last_layers(tiny_cfg):
    cfg = tiny_cfg.with_variant("full")
    torch.manual_seed(0)
    default = dict(build_model(_with_settings(cfg, init="default")).learnable_named_parameters())
    torch.manual_seed(0)
    zero = dict(build_model(cfg).learnable_named_parameters())
    assert zero.keys() == default.keys()
    zeroed = sorted(n for n in zero if ZEROED.match(n))
    # 4 WCMA layers and 8 experts, weight and bias each, and P.
    assert len(zeroed) == 2 * (4 + 8 + 1)
    for name, p in zero.items():
        if name in zeroed:
            assert not p.any() and default[name].any(), name
        else:
            assert torch.equal(p, default[name]), name


def test_prompt_map_is_a_zero_linear_even_when_the_widths_match():
    assert isinstance(CTDS(8, 8, 16, 8).to_prompt, torch.nn.Identity)
    zero = CTDS(8, 8, 16, 8, zero_init=True).to_prompt
    assert isinstance(zero, torch.nn.Linear) and not zero.weight.any() and not zero.bias.any()


def test_non_residual_wcma_cannot_start_at_zero():
    with pytest.raises(ConfigError, match="model.wmoe_clip.init zero_residual needs model.wmoe_clip.wcma.residual"):
        config_from_dict({"model": {"wmoe_clip": {"wcma": {"residual": False}}}})
    cfg = config_from_dict({"model": {"wmoe_clip": {"init": "default", "wcma": {"residual": False}}}})
    assert not cfg.model.wmoe_clip.wcma.residual


def _grads(model, images, labels, masks):
    model.zero_grad(set_to_none=True)
    out = model(images)
    model.loss(out, labels, masks)["total"].backward()
    chosen = {int(i) for i in out.aux["expert_index"].flatten()} if "expert_index" in out.aux else set()
    return {n: p.grad.detach().clone() for n, p in model.learnable_named_parameters()}, chosen


def _expert(name):
    match = re.match(r"^sa_moe\.experts\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def test_zeroed_branches_still_learn_after_one_step(build_tiny, images, labels, masks):
    model = build_tiny("full").train()
    frozen_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    opt = torch.optim.Adam(model.learnable_parameters(), lr=1e-3)

    torch.manual_seed(0)
    step0, chosen0 = _grads(model, images, labels, masks)
    assert all(p.grad is None for p in model.backbone.parameters())
    for name, grad in step0.items():
        expert = _expert(name)
        if BEHIND_ZEROED.match(name) or (expert is not None and expert not in chosen0):
            assert not grad.any(), f"{name} has a gradient behind a zero layer at step 0"
        else:
            assert grad.any(), f"{name} has no gradient at step 0"
    opt.step()

    torch.manual_seed(1)
    step1, chosen1 = _grads(model, images, labels, masks)
    # The router did not move (its gradient was zero), so the same experts are chosen.
    assert chosen1 == chosen0 and len(chosen0) >= 2
    for name, grad in step1.items():
        expert = _expert(name)
        if expert is not None and expert not in chosen1:
            assert not grad.any(), name
        elif KEY_BIAS.match(name):
            weight = step1[name.replace(".bias", ".weight")]
            assert grad.abs().max() <= 1e-5 * weight.abs().max(), name
        else:
            assert grad.any(), f"{name} still has no gradient after one step"
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, frozen_before[k]), k


@pytest.mark.parametrize("variant", list(SWITCHES))
def test_every_variant_learns_everywhere_from_step_one(variant, build_tiny, images, labels, masks):
    model = build_tiny(variant).train()
    opt = torch.optim.Adam(model.learnable_parameters(), lr=1e-3)
    _grads(model, images, labels, masks)
    opt.step()
    grads, chosen = _grads(model, images, labels, masks)
    for name, grad in grads.items():
        expert = _expert(name)
        if (expert is not None and expert not in chosen) or KEY_BIAS.match(name):
            continue
        assert grad.any(), f"{variant}: {name}"

