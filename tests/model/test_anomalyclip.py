"""AnomalyCLIP on the tiny backbone against hand-computed references (github zqhang/AnomalyCLIP's rules).

The references use open_clip's own ``ResidualAttentionBlock.forward`` for the text tower, the
tokenizer for the prompt layout, and the formulas of AnomalyCLIP's ``test.py`` / ``train.py`` /
``loss.py`` written out with plain tensor algebra.
"""

import dataclasses
import math

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from wmoe_clip.config import load_config
from wmoe_clip.errors import WMoEError
from wmoe_clip.model.anomalyclip import AnomalyCLIP
from wmoe_clip.model.anomalyclip.prompts import AnomalyCLIPPrompts
from wmoe_clip.model.base import ModelOutput

N_CTX = 12


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny_anomalyclip")


@pytest.fixture(scope="module")
def model(cfg):
    torch.manual_seed(0)
    m = AnomalyCLIP(cfg).eval()
    with torch.no_grad():  # deep tokens large enough that a misplaced one cannot hide in the tolerance
        m.prompts.deep.normal_(0, 1.0)
    return m


def _images(cfg, n=2, seed=1):
    s = cfg.model.image_size
    return torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(seed))


def _reference_text(model, embeddings, deep_at, positions=range(1, 1 + 4)):
    """Text features with open_clip's own blocks; ``deep_at`` maps a block to tokens put at ``positions``."""
    clip = model.backbone.clip
    eot = model.prompts.eot_index
    x = embeddings + clip.positional_embedding
    for i, blk in enumerate(clip.transformer.resblocks):
        if i in deep_at:
            x = x.clone()
            x[:, list(positions)] = deep_at[i]
        x = blk(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)[torch.arange(2), eot]
    return F.normalize(x @ clip.text_projection, dim=-1)


def _their_deep(model):
    # Their blocks cast the deep tokens with .half() before use.
    return {i: model.prompts.deep[i - 1].half().float() for i in range(1, 9)}


def test_deep_tokens_replace_positions_1_to_4_before_text_blocks_1_to_8(model):
    assert len(model.backbone.clip.transformer.resblocks) == 12 and model.prompts.deep.shape == (8, 4, 64)
    with torch.no_grad():
        embeddings = model.prompts(model.backbone.clip.token_embedding)[0]
        ours = model.encode_prompts()
        right = _reference_text(model, embeddings, _their_deep(model))
        torch.testing.assert_close(ours, right, atol=1e-5, rtol=1e-5)
        deep = _their_deep(model)
        wrong = {
            "no deep tokens": {},
            "blocks 0..7": {i - 1: t for i, t in deep.items()},
            "blocks 2..9": {i + 1: t for i, t in deep.items()},
        }
        for name, deep_at in wrong.items():
            assert (ours - _reference_text(model, embeddings, deep_at)).abs().max() > 1e-3, name
        shifted = _reference_text(model, embeddings, deep, positions=range(2, 6))
        assert (ours - shifted).abs().max() > 1e-3


def test_deep_tokens_touch_nothing_but_their_positions(model, monkeypatch):
    """The inputs of the text blocks: positions 1..4 hold the deep tokens in blocks 1..8 and only there."""
    import wmoe_clip.model.backbone as backbone_module

    inputs = []
    real = backbone_module._block

    def spy(blk, x, mask=None, vv=None):
        inputs.append(x.detach().clone())
        return real(blk, x, mask, vv)

    monkeypatch.setattr(backbone_module, "_block", spy)
    with torch.no_grad():
        model.encode_prompts()
    assert len(inputs) == 12
    deep = _their_deep(model)
    for i, x in enumerate(inputs):
        for state in range(2):
            if i in deep:
                assert torch.equal(x[state, 1:5], deep[i]), i
                assert not torch.equal(x[state, 1:5], model.prompts.deep[i - 1]), "not rounded to fp16"
            else:
                assert not torch.allclose(x[state, 1:5], model.prompts.deep.half().float().flatten(0, 1)[:4]), i
    # Outside 1..4 every block sees the previous block's output unchanged.
    monkeypatch.setattr(backbone_module, "_block", real)
    clip = model.backbone.clip
    mask = clip.attn_mask[: inputs[0].shape[1], : inputs[0].shape[1]]
    for i in range(11):
        out = real(clip.transformer.resblocks[i], inputs[i], mask)
        keep = [0] + list(range(5, out.shape[1]))
        torch.testing.assert_close(inputs[i + 1][:, keep], out[:, keep], atol=0, rtol=0)
        if i + 1 not in deep:
            torch.testing.assert_close(inputs[i + 1], out, atol=0, rtol=0)


def test_prompt_tokenisation_holds_12_slots_after_the_start_token(model):
    """Their prompts: "X X … X object." and "X X … X damaged object." (prompt_ensemble.py)."""
    texts = [" ".join(["X"] * N_CTX) + " object.", " ".join(["X"] * N_CTX) + " damaged object."]
    ref = open_clip.tokenize(texts)
    ids = model.prompts.token_ids
    x_id = int(ref[0, 1])
    assert ref[:, 1:1 + N_CTX].eq(x_id).all()
    assert model.prompts.starts == (1, 1) and model.prompts.length == N_CTX
    keep = [0] + list(range(1 + N_CTX, 77))
    assert torch.equal(ids[:, keep], ref[:, keep])
    assert model.prompts.eot_index.tolist() == ref.argmax(dim=-1).tolist() == [15, 16]
    assert ids[0, 15] == ids[1, 16] == 49407
    with torch.no_grad():
        emb = model.prompts(model.backbone.clip.token_embedding)[0]
        ref_emb = model.backbone.embed_tokens(ref)
    for state in range(2):
        torch.testing.assert_close(emb[state, 1:1 + N_CTX], model.prompts.context[state])
        torch.testing.assert_close(emb[state, keep], ref_emb[state, keep])


def test_maps_are_the_sum_over_layers_of_their_softmax_maps(model, cfg):
    with torch.no_grad():
        feats = model.encode_image(_images(cfg))
        out = model.forward_features(feats)
        text = model.encode_prompts()
    # test.py: softmax(cos/0.07) over (normal, abnormal), both channels upsampled bilinearly, then
    # (p_abnormal + 1 - p_normal) / 2 per layer, summed over layers.
    patches = F.normalize(feats.patch_tokens, dim=-1)
    probs = (patches @ text.T / 0.07).softmax(dim=-1)  # (B,L,N,2)
    b, n_layers = probs.shape[:2]
    grid = probs.permute(0, 1, 3, 2).reshape(b * n_layers, 2, 7, 7)
    up = F.interpolate(grid, size=(112, 112), mode="bilinear", align_corners=False).reshape(b, n_layers, 2, 112, 112)
    per_layer = (up[:, :, 1] + 1 - up[:, :, 0]) / 2
    torch.testing.assert_close(out.layer_maps, per_layer, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.anomaly_map, per_layer.sum(dim=1), atol=1e-5, rtol=0)
    assert out.anomaly_map.max() > 1  # a sum of 4 probabilities, not their mean
    assert not torch.allclose(out.anomaly_map, per_layer.mean(dim=1), atol=1e-2)


def test_image_score_is_the_global_token_alone_without_ln_post(model, cfg):
    images = _images(cfg)
    with torch.no_grad():
        feats = model.encode_image(images)
        out = model.forward_features(feats)
        text = model.encode_prompts()
        # The class token after the last block, projected without ln_post (their VisionTransformer.forward).
        visual = model.backbone.clip.visual
        captured = {}
        handle = visual.ln_post.register_forward_hook(lambda mod, inp, res: captured.update(x=inp[0]))
        model.backbone.clip.encode_image(images)
        handle.remove()
    g = F.normalize(captured["x"][:, 0] @ visual.proj, dim=-1)
    expected = (g @ text.T / 0.07).softmax(dim=-1)[:, 1]
    torch.testing.assert_close(out.image_score, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.global_score, expected, atol=1e-6, rtol=0)
    other_patches = feats._replace(patch_tokens=torch.randn_like(feats.patch_tokens))
    with torch.no_grad():
        moved = model.forward_features(other_patches)
    torch.testing.assert_close(moved.image_score, out.image_score, atol=0, rtol=0)
    assert not torch.allclose(moved.anomaly_map, out.anomaly_map)


def _np_loss(logits, labels, maps, masks, lam=4.0, eps=1e-5, gamma=2.0):
    """train.py + loss.py by hand, in float64: CE + λ·Σ_l [focal + dice(p, S) + dice(1 − p, 1 − S)]."""
    logits, maps, masks = (np.asarray(t, dtype=np.float64) for t in (logits, maps, masks))
    ce = np.mean([-(row[y] - math.log(np.exp(row).sum())) for row, y in zip(logits, labels)])

    def dice(p, t):
        return 1 - np.mean([(2 * (a * b).sum() + 1) / (a.sum() + b.sum() + 1) for a, b in zip(p, t)])

    local = 0.0
    for layer in range(maps.shape[1]):
        p = maps[:, layer]
        # FocalLoss: one-hot target clamped to [eps, 1 - eps], p_t = <one_hot, (1 - p, p)> + eps.
        one_hot_abnormal = np.clip(masks, eps, 1 - eps)
        pt = one_hot_abnormal * p + (1 - one_hot_abnormal) * (1 - p) + eps
        local += np.mean(-((1 - pt) ** gamma) * np.log(pt))
        local += dice(p, masks) + dice(1 - p, 1 - masks)
    return ce, local, ce + lam * local


def test_loss_on_a_hand_case_equals_their_formula(model):
    gen = torch.Generator().manual_seed(3)
    maps = torch.rand(2, 3, 6, 6, generator=gen)
    masks = torch.zeros(2, 6, 6)
    masks[1, 1:4, 2:5] = 1
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    labels = torch.tensor([0, 1])
    out = ModelOutput(maps, maps.sum(1), logits.softmax(-1)[:, 1], logits.softmax(-1)[:, 1],
                     {"global_logits": logits})
    terms = model.loss(out, labels, masks)
    ce, local, total = _np_loss(logits, labels.tolist(), maps, masks)
    assert terms["global"].item() == pytest.approx(ce, rel=1e-5)
    assert (terms["focal"] + terms["dice"]).item() == pytest.approx(local, rel=1e-5)
    assert terms["total"].item() == pytest.approx(total, rel=1e-5)


def test_training_step_moves_only_the_prompts(model, cfg):
    m = AnomalyCLIP(cfg).train()
    assert [n for n, _ in m.learnable_named_parameters()] == ["prompts.context", "prompts.deep"]
    masks = torch.zeros(2, 112, 112)
    masks[1, 20:60, 30:90] = 1
    m.loss(m(_images(cfg)), torch.tensor([0, 1]), masks)["total"].backward()
    assert all(p.grad is None for p in m.backbone.parameters())
    assert all(p.grad.abs().sum() > 0 for p in m.learnable_parameters())


def test_learnable_size_for_vit_l14_336_is_the_closed_form():
    """12 context vectors per state and 8 blocks × 4 deep tokens, width 768: 2·12·768 + 8·4·768."""
    a = load_config("anomalyclip").model.anomalyclip
    prompts = AnomalyCLIPPrompts(a, width=768, context_length=77)
    assert sum(p.numel() for p in prompts.parameters()) == 2 * 12 * 768 + 8 * 4 * 768 == 43_008


def test_deeper_prompts_than_text_layers_are_a_user_error(cfg):
    tiny2 = dataclasses.replace(cfg.model, backbone="wmoe-tiny-quickgelu")
    with pytest.raises(WMoEError, match="deep_prompt_depth 9 exceeds the 2 text layers"):
        AnomalyCLIP(dataclasses.replace(cfg, model=tiny2))
