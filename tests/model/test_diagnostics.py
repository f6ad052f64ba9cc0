"""Training diagnostics on a hand-built ``aux`` against values computed by hand."""

import math

import pytest
import torch

from wmoe_clip.model.wmoe_clip.diagnostics import diagnostics

S = 1 / math.sqrt(2)


def _aux():
    return {
        "g": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        "text": torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]),
        # (B=2, L=2, 2, D=2); norms other than 1 check that a cosine, not a dot product, is taken.
        "refined_text": torch.tensor([
            [[[2.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, 3.0]]],  # cos 1, 1, -1, 1
            [[[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]],  # cos 1/√2 four times
        ]),
        "g_prime": torch.tensor([[1.0, 1.0], [0.0, -3.0]]),  # cos 1/√2, −1
        "prompt_shift_mu": torch.tensor([[3.0, 4.0], [0.0, 0.0]]),  # ‖·‖ 5, 0
        "prompt_shift": torch.tensor([[6.0, 8.0], [0.0, 1.0]]),  # ‖·‖ 10, 1
        "router_probs": torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]]),  # H = ln 2, ln 4
        "expert_index": torch.tensor([[0, 1], [0, 3]]),
    }


def test_diagnostics_match_the_hand_computed_values():
    d = diagnostics(_aux())
    assert d["prompt_shift_norm"] == pytest.approx(2.5)
    assert d["prompt_shift_norm_sampled"] == pytest.approx(5.5)
    assert d["cos_text"] == pytest.approx((0.5 + S) / 2)
    assert d["cos_global"] == pytest.approx((S - 1) / 2)
    assert d["router_entropy"] == pytest.approx(1.5 * math.log(2))  # nats
    assert d["selected_share"] == pytest.approx([0.5, 0.25, 0.0, 0.25])
    assert d["mean_router_prob"] == pytest.approx([0.375, 0.375, 0.125, 0.125])


def test_a_switched_off_module_has_no_entry():
    aux = _aux()
    only_base = {k: aux[k] for k in ("g", "text")}
    assert diagnostics(only_base) == {}
    no_moe = {k: v for k, v in aux.items() if k not in ("g_prime", "router_probs", "expert_index")}
    assert set(diagnostics(no_moe)) == {"prompt_shift_norm", "prompt_shift_norm_sampled", "cos_text"}


def test_diagnostics_of_a_forward_pass_at_initialisation(build_tiny, images):
    model = build_tiny("full").train()
    d = diagnostics(model(images).aux)
    assert d["prompt_shift_norm"] == d["prompt_shift_norm_sampled"] == 0.0
    assert d["cos_text"] == pytest.approx(1.0, abs=1e-6) and d["cos_global"] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < d["router_entropy"] <= math.log(8) and sum(d["selected_share"]) == pytest.approx(1.0)
