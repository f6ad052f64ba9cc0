"""The paper's architecture (random weights, CPU, batch 1): one forward and backward pass."""

import dataclasses

import pytest
import torch

from wmoe_clip.config import load_config
from wmoe_clip.model import LEARNABLE_MODULES, build_model
from wmoe_clip.model.summary import parameter_counts


@pytest.mark.slow
def test_vit_l14_336_forward_and_backward(closed_form_counts):
    cfg = load_config("vit_l14_336", "full")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=None))
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert model.backbone.clip.visual.positional_embedding.shape == (37 * 37 + 1, 1024)
    # What model-summary prints for the paper's configuration, against the closed form.
    counts = parameter_counts(model)
    assert {k: counts[k] for k in LEARNABLE_MODULES} == closed_form_counts(model)
    assert counts["total"] == sum(p.numel() for p in model.learnable_parameters())
    image = torch.randn(1, 3, 518, 518)
    feats = model.encode_image(image)
    assert feats.global_token.shape == (1, 768) and feats.patch_tokens.shape == (1, 4, 37 * 37, 768)
    out = model.forward_features(feats)
    assert out.layer_maps.shape == (1, 4, 518, 518) and out.image_score.shape == (1,)
    mask = torch.zeros(1, 518, 518)
    mask[0, 100:200, 150:300] = 1
    terms = model.loss(out, torch.tensor([1]), mask)
    terms["total"].backward()
    assert torch.isfinite(terms["total"])
    assert all(p.grad is not None for n, p in model.learnable_named_parameters() if ".experts." not in n)
    assert all(p.grad is None for p in model.backbone.parameters())
