"""The paper's architecture (random weights, CPU, batch 1): one forward and backward pass, and every
Table 2 variant equal to ``base`` at initialisation. The slow tests of the suite: the backbone is built
and the image encoded once for both."""

import dataclasses

import pytest
import torch

import wmoe_clip.model.base as model_base
from wmoe_clip.config import load_config
from wmoe_clip.model import build_model
from wmoe_clip.model.wmoe_clip import LEARNABLE_MODULES
from wmoe_clip.model.summary import parameter_counts
from wmoe_clip.model.wmoe_clip.settings import SWITCHES

SEED = 0


def _cfg(variant):
    cfg = load_config("vit_l14_336", variant)
    # fp32 keeps the comparison exact and the CPU fast; the identity does not depend on the precision.
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=None, precision="fp32"))


@pytest.fixture(scope="module")
def vit_l():
    torch.manual_seed(SEED)
    model = build_model(_cfg("full"))
    image = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(1))
    return model, model.encode_image(image)


@pytest.mark.slow
def test_vit_l14_336_forward_and_backward(vit_l, closed_form_counts):
    model, feats = vit_l
    model.train()
    assert model.backbone.clip.visual.positional_embedding.shape == (37 * 37 + 1, 1024)
    # What model-summary prints for the paper's configuration, against the closed form.
    counts = parameter_counts(model)
    assert {k: counts[k] for k in LEARNABLE_MODULES} == closed_form_counts(model)
    assert counts["total"] == sum(p.numel() for p in model.learnable_parameters())
    assert feats.global_token.shape == (1, 768) and feats.patch_tokens.shape == (1, 4, 37 * 37, 768)
    out = model.forward_features(feats)
    assert out.layer_maps.shape == (1, 4, 518, 518) and out.image_score.shape == (1,)
    mask = torch.zeros(1, 518, 518)
    mask[0, 100:200, 150:300] = 1
    terms = model.loss(out, torch.tensor([1]), mask)
    model.zero_grad(set_to_none=True)
    terms["total"].backward()
    assert torch.isfinite(terms["total"])
    assert all(p.grad is not None for n, p in model.learnable_named_parameters() if ".experts." not in n)
    assert all(p.grad is None for p in model.backbone.parameters())


@pytest.mark.slow
def test_vit_l14_336_variants_start_as_base(vit_l, monkeypatch):
    full, feats = vit_l
    # Each variant is built by the real constructor with the same seed; only the frozen backbone (whose
    # random weights come from model.backbone_seed, outside the global RNG) is shared, to save time.
    monkeypatch.setattr(model_base, "FrozenCLIP", lambda cfg: full.backbone)
    outputs = {}
    for variant in SWITCHES:
        torch.manual_seed(SEED)
        model = full if variant == "full" else build_model(_cfg(variant))
        with torch.no_grad():
            outputs[variant] = model.eval().forward_features(feats)
    base = outputs.pop("base")
    for variant, out in outputs.items():
        torch.testing.assert_close(out.anomaly_map, base.anomaly_map, atol=1e-6, rtol=0, msg=variant)
        torch.testing.assert_close(out.image_score, base.image_score, atol=1e-6, rtol=0, msg=variant)
    aux = outputs["full"].aux
    assert torch.equal(aux["g_prime"], aux["g"]) and not aux["prompt_shift"].any()
