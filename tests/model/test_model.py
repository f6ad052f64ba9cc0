"""WMoE-CLIP on the tiny backbone: shapes, switches, gradients, determinism, references to open_clip."""

import dataclasses

import open_clip
import pytest
import torch

from wmoe_clip.config import load_config
from wmoe_clip.errors import WMoEError
from wmoe_clip.model import ImageFeatures, build_model
from wmoe_clip.model.wmoe_clip.settings import SWITCHES

MODULE_OF_SWITCH = {"ctds": 0, "wcma": 1, "sa_moe": 2}


@pytest.mark.parametrize("variant", list(SWITCHES))
def test_shapes_and_value_ranges(variant, build_tiny, images, labels, masks):
    model = build_tiny(variant).train()
    m = model.cfg.model.wmoe_clip
    out = model(images)
    b, s, n_layers = images.shape[0], model.cfg.model.image_size, len(model.cfg.model.feature_layers)
    assert out.layer_maps.shape == (b, n_layers, s, s)
    assert out.anomaly_map.shape == (b, s, s)
    assert out.global_score.shape == out.image_score.shape == (b,)
    for t in (out.layer_maps, out.anomaly_map, out.global_score, out.image_score):
        assert t.dtype == torch.float32 and t.min() >= 0 and t.max() <= 1
    torch.testing.assert_close(out.anomaly_map, out.layer_maps.mean(dim=1))
    expected = m.alpha * out.global_score + (1 - m.alpha) * out.anomaly_map.flatten(1).max(dim=1).values
    torch.testing.assert_close(out.image_score, expected)
    assert ("mu" in out.aux) == m.ctds.enabled and ("router_probs" in out.aux) == m.sa_moe.enabled
    if m.sa_moe.enabled:
        assert out.aux["expert_index"].shape == (b, m.sa_moe.top_k)
    terms = model.loss(out, labels, masks)
    assert {"total", "global", "focal", "dice"} <= set(terms)
    # A switched-off module has no terms: a logged 0 would read as a collapsed KL.
    assert ({"kl", "rec"} <= set(terms)) == m.ctds.enabled
    assert ("load_balance" in terms) == m.sa_moe.enabled
    for name, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), name


def _learnable_shapes(model):
    return {n: tuple(p.shape) for n, p in model.learnable_named_parameters()}


@pytest.mark.parametrize("switch", list(MODULE_OF_SWITCH))
def test_each_switch_adds_exactly_its_module(switch, build_tiny):
    for name, flags in SWITCHES.items():
        on = list(flags)
        if not on[MODULE_OF_SWITCH[switch]]:
            continue
        off = list(on)
        off[MODULE_OF_SWITCH[switch]] = False
        partner = next((n for n, f in SWITCHES.items() if list(f) == off), None)
        if partner is None:
            continue
        with_module, without = _learnable_shapes(build_tiny(name)), _learnable_shapes(build_tiny(partner))
        added = set(with_module) - set(without)
        assert not set(without) - set(with_module)
        assert added and all(k.startswith(switch + ".") for k in added), (name, partner)
        assert all(with_module[k] == without[k] for k in without)


@pytest.mark.parametrize("variant", list(SWITCHES))
def test_parameter_counts_match_the_closed_form(variant, build_tiny, closed_form_counts):
    model = build_tiny(variant)
    expected = closed_form_counts(model)
    flags = dict(zip(MODULE_OF_SWITCH, SWITCHES[variant]))
    for name, count in expected.items():
        module = getattr(model, name)
        got = 0 if module is None else sum(p.numel() for p in module.parameters())
        assert got == (count if flags.get(name, True) else 0), name
    assert sum(p.numel() for p in model.learnable_parameters()) == sum(
        c for n, c in expected.items() if flags.get(n, True))


@pytest.mark.parametrize("variant", list(SWITCHES))
def test_default_init_gradients_reach_every_learnable_and_no_clip_parameter(variant, build_tiny, images, labels,
                                                                            masks):
    # With PyTorch's initialisation nothing is zero, so every learnable gets a gradient at step 0.
    model = build_tiny(variant, init="default").train()
    frozen_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    out = model(images)
    model.loss(out, labels, masks)["total"].backward()
    chosen = {int(i) for i in out.aux["expert_index"].flatten()} if "expert_index" in out.aux else set()
    for name, p in model.named_parameters():
        if name.startswith("backbone."):
            assert not p.requires_grad and p.grad is None, name
            continue
        assert p.grad is not None, name
        nonzero = bool(p.grad.abs().sum() > 0)
        if name.startswith("sa_moe.experts."):
            assert nonzero == (int(name.split(".")[2]) in chosen), name
        else:
            assert nonzero, name
    learnable_before = {n: p.detach().clone() for n, p in model.learnable_named_parameters()}
    opt = torch.optim.Adam(model.learnable_parameters(), lr=1e-3)
    opt.step()
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, frozen_before[k]), k
    for name, p in model.learnable_named_parameters():
        if p.grad.abs().sum() > 0:
            assert not torch.equal(p, learnable_before[name]), name


def test_backbone_stays_in_eval_mode(build_tiny):
    model = build_tiny("full").train()
    assert model.training and model.ctds.training
    assert not model.backbone.training and not any(m.training for m in model.backbone.modules())


def test_same_seed_same_outputs_and_eval_is_deterministic(build_tiny, images):
    a, b = build_tiny("full", seed=3).train(), build_tiny("full", seed=3).train()
    torch.manual_seed(7)
    out_a = a(images)
    torch.manual_seed(7)
    out_b = b(images)
    torch.testing.assert_close(out_a.anomaly_map, out_b.anomaly_map, rtol=0, atol=0)
    torch.testing.assert_close(out_a.image_score, out_b.image_score, rtol=0, atol=0)
    a.eval()
    with torch.no_grad():
        first, second = a(images), a(images)
    torch.testing.assert_close(first.anomaly_map, second.anomaly_map, rtol=0, atol=0)
    torch.testing.assert_close(first.image_score, second.image_score, rtol=0, atol=0)
    assert torch.equal(first.aux["z"], first.aux["mu"])


def test_forward_features_of_cached_fp16_features(build_tiny, images):
    model = build_tiny("full").eval()
    with torch.no_grad():
        feats = model.encode_image(images)
        direct = model.forward_features(feats)
        cached = model.forward_features(ImageFeatures(*(t.half() for t in feats)))
        full = model(images)
    torch.testing.assert_close(direct.anomaly_map, full.anomaly_map)
    torch.testing.assert_close(cached.anomaly_map, direct.anomaly_map, atol=1e-2, rtol=0)
    torch.testing.assert_close(cached.image_score, direct.image_score, atol=1e-2, rtol=0)


@pytest.mark.parametrize("vv", [False, True])
def test_image_tokens_match_open_clip(vv, tiny_cfg, images):
    cfg = dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, vv_attention=vv))
    model = build_model(cfg)
    feats = model.encode_image(images)
    clip = model.backbone.clip
    with torch.no_grad():
        # open_clip's own forward is the reference for the global token whatever the patch path.
        torch.testing.assert_close(feats.global_token, clip.encode_image(images), atol=1e-5, rtol=1e-4)
        clip.visual.output_tokens = True
        _, tokens = clip.visual(images)
        clip.visual.output_tokens = False
    last = feats.patch_tokens[:, -1]
    if vv:
        assert not torch.allclose(last, tokens @ clip.visual.proj, atol=1e-3)
    else:
        torch.testing.assert_close(last, tokens @ clip.visual.proj, atol=1e-5, rtol=1e-4)


def test_truncated_text_encoding_equals_the_full_77_tokens(build_tiny):
    model = build_tiny("full")
    backbone = model.backbone
    shift = torch.randn(3, backbone.text_width)
    embeddings = model.prompts(backbone.clip.token_embedding, shift)
    flat = embeddings.reshape(-1, *embeddings.shape[2:])
    eot = model.prompts.eot_index.repeat(3)
    assert flat.shape[1] == 77 and int(eot.max()) + 1 < 20
    full = backbone.encode_text(flat, eot, truncate=False)
    cut = backbone.encode_text(flat, eot, truncate=True)
    torch.testing.assert_close(cut, full, atol=1e-5, rtol=1e-5)


def test_text_encoder_on_embeddings_matches_open_clip(build_tiny):
    model = build_tiny("base")
    backbone = model.backbone
    ids = open_clip.tokenize(["a photo of a good cable.", "a photo of a damaged metal nut."])
    eot = ids.argmax(dim=-1)
    ours = backbone.encode_text(backbone.embed_tokens(ids), eot, truncate=True)
    with torch.no_grad():
        ref = backbone.clip.encode_text(ids)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_prompt_layout_holds_the_learnable_slots(build_tiny):
    model = build_tiny("base")
    emb = model.prompts(model.backbone.clip.token_embedding)
    ids = open_clip.tokenize(["a photo of a good x x.", "a photo of a damaged x x."])
    ref = model.backbone.embed_tokens(ids)
    for state, start in enumerate(model.prompts.starts):
        assert start == 6
        torch.testing.assert_close(emb[0, state, start:start + 2], model.prompts.context[state])
        keep = [i for i in range(77) if not start <= i < start + 2]
        torch.testing.assert_close(emb[0, state, keep], ref[state, keep])
    assert model.prompts.eot_index.tolist() == ids.argmax(-1).tolist()


def test_wrong_image_size_and_layers_are_user_errors(build_tiny, tiny_cfg):
    model = build_tiny("base")
    with pytest.raises(WMoEError, match="model.image_size"):
        model.encode_image(torch.zeros(1, 3, 64, 64))
    bad = dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, feature_layers=(2, 9)))
    with pytest.raises(WMoEError, match="exceed the 4 layers"):
        build_model(bad)


def test_missing_pretrained_weights_say_how_to_get_them(tiny_cfg, tmp_path):
    cfg = load_config("vit_l14_336")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=str(tmp_path / "nope.pt")))
    with pytest.raises(WMoEError, match="download-weights --dest DIR"):
        build_model(cfg)


def test_a_callers_autocast_changes_nothing(build_tiny, images, labels, masks):
    # The precision is the config's (fp32 in the tiny config): the model switches a caller's autocast off.
    model = build_tiny("full").eval()
    with torch.no_grad():
        plain = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under = model(images)
            terms = model.loss(under, labels, masks)
    assert under.layer_maps.dtype == under.image_score.dtype == terms["total"].dtype == torch.float32
    torch.testing.assert_close(under.anomaly_map, plain.anomaly_map, rtol=0, atol=0)
    torch.testing.assert_close(under.image_score, plain.image_score, rtol=0, atol=0)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_runs_only_the_frozen_encoders_in_it(precision, build_tiny, images, labels, masks):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    model = build_tiny("full", precision=precision).train()
    feats = model.encode_image(images)
    assert feats.global_token.dtype == feats.patch_tokens.dtype == dtype
    out = model.forward_features(feats)
    for name in ("g", "mu", "g_hat", "prompt_shift", "text", "refined_text", "g_prime", "router_probs"):
        assert out.aux[name].dtype == torch.float32, name
    terms = model.loss(out, labels, masks)
    assert out.layer_maps.dtype == terms["total"].dtype == torch.float32 and torch.isfinite(terms["total"])
    terms["total"].backward()
    assert model.prompts.context.grad.dtype == torch.float32 and model.prompts.context.grad.any()
    reference = build_tiny("full").eval()
    model.eval()
    with torch.no_grad():
        # The same model in fp32 gives nearly the same maps (a loose bound; benchmarks/precision.py measures it).
        torch.testing.assert_close(model(images).anomaly_map, reference(images).anomaly_map, atol=0.05, rtol=0)
