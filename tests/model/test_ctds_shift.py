"""model.wmoe_clip.ctds.shift: one P(z) added to every prompt slot ("shared") or a different one per slot ("per_slot")."""

import dataclasses

import pytest
import torch

from wmoe_clip.config import ConfigError, config_from_dict
from wmoe_clip.model.prompts import PromptLearner
from wmoe_clip.model.wmoe_clip.ctds import CTDS


def _slots(embeddings, learner):
    """The slot embeddings (B,2,M,W) of the prompts, cut at the templates' slot positions."""
    return torch.stack([embeddings[:, s, start:start + learner.length] for s, start in enumerate(learner.starts)], dim=1)


def test_per_slot_mode_adds_a_different_p_of_z_to_each_slot():
    torch.manual_seed(0)
    ctds = CTDS(dim=6, latent_dim=4, hidden=5, text_width=8, slot_shape=(2, 3)).eval()
    learner = PromptLearner("a photo of a good", "a photo of a damaged", 3, 8, 77)
    embedding = torch.nn.Embedding(49408, 8)
    g = torch.randn(2, 6)
    out = ctds(g)
    shift = out["prompt_shift"]
    assert shift.shape == (2, 2, 3, 8)
    # P(z) by hand: the linear map of μ to 2·3·8 values, laid out as (state, slot, width).
    mu = g @ ctds.to_mu.weight.T + ctds.to_mu.bias
    expected = (mu @ ctds.to_prompt.weight.T + ctds.to_prompt.bias).reshape(2, 2, 3, 8)
    torch.testing.assert_close(shift, expected)
    slots = _slots(learner(embedding, shift), learner)
    torch.testing.assert_close(slots, learner.context.detach()[None] + expected)
    added = slots - learner.context.detach()[None]
    # Each of the six slots of an image gets its own vector.
    flat = added[0].reshape(6, 8)
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(6) for j in range(i + 1, 6))


def test_shared_mode_adds_the_same_p_of_z_to_every_slot_of_both_prompts():
    torch.manual_seed(0)
    ctds = CTDS(dim=6, latent_dim=4, hidden=5, text_width=8).eval()
    learner = PromptLearner("a photo of a good", "a photo of a damaged", 3, 8, 77)
    shift = ctds(torch.randn(2, 6))["prompt_shift"]
    assert shift.shape == (2, 8)
    added = _slots(learner(torch.nn.Embedding(49408, 8), shift), learner) - learner.context.detach()[None]
    torch.testing.assert_close(added, shift[:, None, None, :].expand(-1, 2, 3, -1))


def test_the_tiny_model_runs_per_slot_and_starts_at_the_base_prompts(build_tiny, tiny_cfg):
    ctds = dataclasses.replace(tiny_cfg.model.wmoe_clip.ctds, shift="per_slot")
    model = build_tiny("full", ctds=ctds).eval()
    assert model.ctds.to_prompt.out_features == 2 * tiny_cfg.model.wmoe_clip.prompt_length * model.backbone.text_width
    base = build_tiny("full").eval()
    images = torch.randn(2, 3, tiny_cfg.model.image_size, tiny_cfg.model.image_size)
    with torch.no_grad():
        out, ref = model(images), base(images)
    # zero_residual: P starts at zero in either mode, so both give the base prompts' scores at step 0.
    torch.testing.assert_close(out.image_score, ref.image_score)


def test_an_unknown_shift_mode_is_refused():
    per_slot = config_from_dict({"model": {"wmoe_clip": {"ctds": {"shift": "per_slot"}}}})
    assert per_slot.model.wmoe_clip.ctds.shift == "per_slot"
    with pytest.raises(ConfigError, match="model.wmoe_clip.ctds.shift must be one of shared, per_slot"):
        config_from_dict({"model": {"wmoe_clip": {"ctds": {"shift": "each"}}}})
