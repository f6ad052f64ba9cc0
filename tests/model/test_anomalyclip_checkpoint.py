"""Import of AnomalyCLIP's released checkpoints: their exact format or a one-line refusal, nothing run."""

import builtins
from collections import OrderedDict

import open_clip
import pytest
import torch

from wmoe_clip.config import load_config
from wmoe_clip.model.anomalyclip.settings import Settings as AnomalyCLIPSettings
from wmoe_clip.errors import WMoEError
from wmoe_clip.model.anomalyclip import AnomalyCLIP, load_anomalyclip_checkpoint, read_anomalyclip_checkpoint
from wmoe_clip.model.checkpoint import load_learnable_state, read_checkpoint, save_checkpoint


def their_state_dict(width, n_ctx=12, depth=9, t_n_ctx=4, token_embedding=None, seed=0):
    """What AnomalyCLIP_PromptLearner.state_dict() holds, written from their prompt_ensemble.py."""
    gen = torch.Generator().manual_seed(seed)
    prompts = {"pos": " ".join(["X"] * n_ctx) + " object.", "neg": " ".join(["X"] * n_ctx) + " damaged object."}
    state = OrderedDict()
    state["ctx_pos"] = torch.randn(1, 1, n_ctx, width, generator=gen) * 0.02
    state["ctx_neg"] = torch.randn(1, 1, n_ctx, width, generator=gen) * 0.02
    for i in range(depth - 1):
        state[f"compound_prompts_text.{i}"] = torch.randn(t_n_ctx, width, generator=gen) * 0.02
    for i in range(depth - 1):
        state[f"compound_prompt_projections.{i}.weight"] = torch.randn(896, width, generator=gen) * 0.02
        state[f"compound_prompt_projections.{i}.bias"] = torch.zeros(896)
    for tag, text in prompts.items():
        ids = open_clip.tokenize([text])
        emb = token_embedding(ids) if token_embedding is not None else torch.randn(1, 77, width, generator=gen)
        state[f"token_prefix_{tag}"] = emb[None, :, :1].detach().clone()
        state[f"token_suffix_{tag}"] = emb[None, :, 1 + n_ctx:].detach().clone()
    for tag, text in prompts.items():
        state[f"tokenized_prompts_{tag}"] = open_clip.tokenize([text]).int()[None]
    return state


def write(path, state):
    torch.save({"prompt_learner": state}, path)
    return path


def test_vit_l14_336_checkpoint_with_the_real_keys_and_shapes_imports(tmp_path):
    state = their_state_dict(768)
    assert state["ctx_pos"].shape == (1, 1, 12, 768) and state["compound_prompts_text.7"].shape == (4, 768)
    assert state["token_suffix_neg"].shape == (1, 1, 64, 768) and state["tokenized_prompts_pos"].shape == (1, 1, 77)
    imported = read_anomalyclip_checkpoint(write(tmp_path / "epoch_15.pth", state), AnomalyCLIPSettings())
    assert set(imported.state) == {"prompts.context", "prompts.deep"}
    assert torch.equal(imported.state["prompts.context"][0], state["ctx_pos"][0, 0])
    assert torch.equal(imported.state["prompts.context"][1], state["ctx_neg"][0, 0])
    for i in range(8):
        assert torch.equal(imported.state["prompts.deep"][i], state[f"compound_prompts_text.{i}"])
    # What AnomalyCLIP learns (the projections are stored but never used) and what their file holds.
    assert sum(t.numel() for t in imported.state.values()) == 43_008
    stored = sum(v.numel() for k, v in state.items() if k.startswith(("ctx_", "compound_")))
    assert stored == 43_008 + 8 * (896 * 768 + 896) == 5_555_200


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return AnomalyCLIP(load_config("tiny_anomalyclip")).eval()


def test_import_evaluates_and_round_trips_through_our_checkpoint(tiny, tmp_path):
    images = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = tiny(images)
    state = their_state_dict(64, token_embedding=tiny.backbone.clip.token_embedding, seed=5)
    load_anomalyclip_checkpoint(tiny, write(tmp_path / "theirs.pth", state))
    with torch.no_grad():
        after = tiny(images)
    assert not torch.allclose(after.image_score, before.image_score)
    assert torch.isfinite(after.anomaly_map).all()
    # Their prompt: the stored prefix and suffix around the context; deep tokens as their blocks use them.
    prompts = torch.cat([torch.cat([state[f"token_prefix_{t}"], state[f"ctx_{t}"], state[f"token_suffix_{t}"]], dim=2)[0]
                         for t in ("pos", "neg")])
    deep = {i + 1: state[f"compound_prompts_text.{i}"].half().float() for i in range(8)}
    with torch.no_grad():
        text = tiny.backbone.encode_text(prompts, state["tokenized_prompts_pos"].new_tensor([15, 16]).long(),
                                         truncate=False, deep_tokens=deep)
        torch.testing.assert_close(tiny.encode_prompts(), torch.nn.functional.normalize(text, dim=-1),
                                   atol=1e-6, rtol=0)
    # Round trip: our checkpoint format, read with weights_only, into a fresh model.
    save_checkpoint(tiny, tmp_path / "ours.pt")
    cfg, ours = read_checkpoint(tmp_path / "ours.pt")
    assert cfg == tiny.cfg
    fresh = AnomalyCLIP(cfg).eval()
    load_learnable_state(fresh, ours, "ours.pt")
    for name, p in fresh.learnable_named_parameters():
        assert torch.equal(p, dict(tiny.learnable_named_parameters())[name]), name
    with torch.no_grad():
        again = fresh(images)
    torch.testing.assert_close(again.anomaly_map, after.anomaly_map, atol=0, rtol=0)


def _refusal(tiny, tmp_path, state=None, payload=None):
    path = tmp_path / "bad.pth"
    torch.save(payload if payload is not None else {"prompt_learner": state}, path)
    with pytest.raises(WMoEError) as info:
        load_anomalyclip_checkpoint(tiny, path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_malformed_checkpoints_are_refused_naming_the_problem(tiny, tmp_path):
    good = their_state_dict(64, token_embedding=tiny.backbone.clip.token_embedding)

    missing = OrderedDict((k, v) for k, v in good.items() if k != "compound_prompts_text.3")
    assert "missing key(s) compound_prompts_text.3" in _refusal(tiny, tmp_path, missing)

    wrong = OrderedDict(good, ctx_neg=torch.zeros(1, 1, 8, 64))
    assert "ctx_neg has shape (1, 1, 8, 64), expected (1, 1, 12, 64)" in _refusal(tiny, tmp_path, wrong)

    deeper = their_state_dict(64, depth=10, token_embedding=tiny.backbone.clip.token_embedding)
    assert "unexpected key(s) compound_prompt_projections.8.bias" in _refusal(tiny, tmp_path, deeper)

    other_words = OrderedDict(good, tokenized_prompts_neg=open_clip.tokenize(["X " * 12 + "broken object."]).int()[None])
    assert "tokenized_prompts_neg is not the tokenisation" in _refusal(tiny, tmp_path, other_words)

    not_wrapped = _refusal(tiny, tmp_path, payload=dict(good))
    assert "expected a dict with the single key 'prompt_learner'" in not_wrapped

    other_clip = their_state_dict(64)  # token embeddings of other CLIP weights
    assert "trained with other CLIP weights" in _refusal(tiny, tmp_path, other_clip)


class _Payload:
    """A pickle that would create a file when unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_a_pickle_with_code_is_refused_and_never_runs(tiny, tmp_path):
    marker = tmp_path / "payload_ran"
    state = their_state_dict(64, token_embedding=tiny.backbone.clip.token_embedding)
    state["ctx_pos"] = _Payload(marker)
    message = _refusal(tiny, tmp_path, state)
    assert "refused" in message and "weights_only" in message and "Unsupported global: GLOBAL exec" in message
    assert not marker.exists()
