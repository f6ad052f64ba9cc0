"""Module-level checks against closed forms and brute force."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from pytorch_wavelets import DWTInverse

from wmoe_clip.model.wmoe_clip.settings import DWT_MODES
from wmoe_clip.model import losses
from wmoe_clip.model.wmoe_clip import losses as wmoe_losses
from wmoe_clip.model.wmoe_clip.sa_moe import SAMoE, top_k_routing
from wmoe_clip.model.wmoe_clip.wcma import HaarSplit


@pytest.mark.parametrize("size", [(8, 8), (7, 7)])
def test_haar_bands_recombine_through_the_inverse(size):
    x = torch.randn(2, 5, *size, generator=torch.Generator().manual_seed(0))
    split = HaarSplit()
    low, high = split.bands(x)
    back = DWTInverse(wave="haar")((low, [high]))[..., : size[0], : size[1]]
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    # X_H is the sum of the three high bands.
    torch.testing.assert_close(split(x)[1], high.sum(dim=2))


def test_haar_low_band_is_the_scaled_block_sum():
    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    low, high = HaarSplit().bands(x)
    blocks = x.reshape(1, 3, 3, 2, 3, 2)
    torch.testing.assert_close(low, blocks.sum(dim=(3, 5)) / 2, atol=1e-5, rtol=0)
    # Orthonormal transform: energy is preserved.
    torch.testing.assert_close(low.pow(2).sum() + high.pow(2).sum(), x.pow(2).sum(), rtol=1e-5, atol=1e-4)


def test_dwt_mode_changes_only_the_border_of_the_bands():
    # 7×7 is odd like 37×37: the last row and column of the bands see one padded sample.
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(3))
    bands = {mode: HaarSplit(mode).bands(x) for mode in DWT_MODES}
    zero_low, zero_high = bands["zero"]
    for mode, (low, high) in bands.items():
        assert low.shape == (2, 3, 4, 4) and high.shape == (2, 3, 3, 4, 4), mode
        torch.testing.assert_close(low[..., :-1, :-1], zero_low[..., :-1, :-1], atol=1e-5, rtol=0)
        torch.testing.assert_close(high[..., :-1, :-1], zero_high[..., :-1, :-1], atol=1e-5, rtol=0)
        if mode != "zero":
            assert not torch.allclose(low[..., -1, :], zero_low[..., -1, :], atol=1e-3), mode
            assert not torch.allclose(low[..., :, -1], zero_low[..., :, -1], atol=1e-3), mode
    # Closed forms on the last row (columns 0..2 hold whole 2×2 blocks): zero padding halves the block
    # sum and puts half of it into the row-difference band as an edge; symmetric padding repeats the
    # last row, so the block sum doubles and that band is 0.
    pair = x[..., -1, 0:6:2] + x[..., -1, 1:6:2]
    sym_low, sym_high = bands["symmetric"]
    torch.testing.assert_close(zero_low[..., -1, :3], pair / 2, atol=1e-5, rtol=0)
    torch.testing.assert_close(zero_high[:, :, 0, -1, :3].abs(), pair.abs() / 2, atol=1e-5, rtol=0)
    torch.testing.assert_close(sym_low[..., -1, :3], pair, atol=1e-5, rtol=0)
    torch.testing.assert_close(sym_high[:, :, 0, -1, :3], torch.zeros_like(pair), atol=1e-5, rtol=0)


def test_dwt_mode_is_the_same_on_an_even_grid():
    x = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(4))
    low, high = HaarSplit("zero").bands(x)
    for mode in DWT_MODES:
        other_low, other_high = HaarSplit(mode).bands(x)
        torch.testing.assert_close(other_low, low, atol=1e-5, rtol=0)
        torch.testing.assert_close(other_high, high, atol=1e-5, rtol=0)


def test_the_configured_dwt_mode_reaches_every_wcma_layer(build_tiny, tiny_cfg):
    assert tiny_cfg.model.wmoe_clip.wcma.dwt_mode == "symmetric"
    model = build_tiny("full", wcma=dataclasses.replace(tiny_cfg.model.wmoe_clip.wcma, dwt_mode="reflect"))
    assert [layer.enhance.haar.dwt.mode for layer in model.wcma.layers] == ["reflect"] * 4


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_routing_keeps_exactly_k_with_unit_weight(k):
    logits = torch.randn(16, 8, generator=torch.Generator().manual_seed(k))
    probs, index, weights = top_k_routing(logits, k)
    ref = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True)
    np.testing.assert_allclose(probs.numpy(), ref, rtol=1e-5)
    for row in range(16):
        expected = set(np.argsort(-ref[row])[:k])
        assert set(index[row].tolist()) == expected and len(set(index[row].tolist())) == k
        np.testing.assert_allclose(weights[row].numpy(), ref[row][index[row].numpy()] / ref[row][list(expected)].sum(), rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(16))


def test_sa_moe_mixes_only_the_chosen_experts():
    torch.manual_seed(0)
    moe = SAMoE(num_layers=2, dim=6, adapter_dim=3, num_experts=4, top_k=2, hidden=5)
    patches = torch.randn(3, 2, 9, 6)
    out = moe(patches)
    context = torch.cat([moe.adapters[i](patches[:, i]).mean(dim=1) for i in range(2)], dim=-1)
    for b in range(3):
        expected = sum(w * moe.experts[int(i)](context[b]) for i, w in zip(out["expert_index"][b], out["expert_weights"][b]))
        torch.testing.assert_close(out["delta"][b], expected, atol=1e-5, rtol=1e-5)


def test_kl_matches_the_closed_form_on_a_hand_case():
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # Sample 1: 0.5·[(1 + 1 − 1 − 0) + (0 + 2 − 1 − ln 2)] = 1 − ln2/2; sample 2 is N(0, I): 0.
    expected = (1 - math.log(2) / 2 + 0.0) / 2
    assert wmoe_losses.kl_divergence(mu, logvar).item() == pytest.approx(expected, rel=1e-6)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(-1).mean()
    assert wmoe_losses.kl_divergence(mu, logvar).item() == pytest.approx(ref.item(), rel=1e-6)


def test_reconstruction_loss_is_the_mean_squared_norm():
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g_hat = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    assert wmoe_losses.reconstruction_loss(g, g_hat).item() == pytest.approx((1 + 4) / 2)


def test_focal_and_dice_on_a_hand_case():
    prob = torch.tensor([[[0.9, 0.2], [0.6, 0.1]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    p = prob.numpy().ravel()
    t = target.numpy().ravel()
    pt = np.where(t == 1, p, 1 - p)
    focal = np.mean(-((1 - pt) ** 2) * np.log(pt))
    assert losses.focal_loss(prob, target, 2.0).item() == pytest.approx(focal, rel=1e-5)
    dice = 1 - (2 * 0.9 + 1) / (p.sum() + 1 + 1)
    assert losses.dice_loss(prob, target).item() == pytest.approx(dice, rel=1e-6)
    # Perfect prediction: no loss.
    assert losses.dice_loss(target, target).item() == pytest.approx(0.0, abs=1e-7)


def test_load_balance_is_one_when_uniform_and_e_when_collapsed():
    e = 4
    uniform = torch.full((4, e), 1 / e)
    index = torch.tensor([[0, 1], [2, 3], [0, 1], [2, 3]])
    assert wmoe_losses.load_balance_loss(uniform, index).item() == pytest.approx(1.0)
    collapsed = torch.tensor([[1.0, 0, 0, 0]] * 4)
    assert wmoe_losses.load_balance_loss(collapsed, torch.zeros(4, 1, dtype=torch.long)).item() == pytest.approx(e)
