"""The backbone options that restore AnomalyCLIP's numerics: each changes what it should and nothing else."""

import dataclasses

import numpy as np
import open_clip
import pytest
import torch

from wmoe_clip.config import ConfigError, RunConfig, config_from_dict, config_with_overrides, load_config
from wmoe_clip.errors import WMoEError
from wmoe_clip.model.backbone import FrozenCLIP
from wmoe_clip.model.tiny import register_tiny_backbone

ANOMALYCLIP = {"global_token_ln_post": False, "pos_embed_interpolation": "bilinear", "precision": "fp32"}


def test_compat_anomalyclip_sets_exactly_the_three_options():
    cfg = config_from_dict({"model": {"compat": "anomalyclip"}})
    expected = dataclasses.replace(RunConfig().model, compat="anomalyclip", **ANOMALYCLIP)
    assert cfg == dataclasses.replace(RunConfig(), model=expected)
    assert config_from_dict(cfg.to_dict()) == cfg
    m = RunConfig().model
    assert (m.global_token_ln_post, m.pos_embed_interpolation, m.precision, m.compat) == (True, "bicubic", "bf16", None)


def test_compat_conflicts_and_unknown_values_are_errors():
    with pytest.raises(ConfigError, match="model.compat anomalyclip sets model.precision to 'fp32', but it is 'bf16'"):
        config_from_dict({"model": {"compat": "anomalyclip", "precision": "bf16"}}, "x.yaml")
    assert config_from_dict({"model": {"compat": "anomalyclip", "precision": "fp32"}}).model.precision == "fp32"
    with pytest.raises(ConfigError, match="model.compat must be null or one of anomalyclip"):
        config_from_dict({"model": {"compat": "adaclip"}})
    with pytest.raises(ConfigError, match="model.pos_embed_interpolation must be one of bicubic, bilinear"):
        config_from_dict({"model": {"pos_embed_interpolation": "nearest"}})


def test_an_override_of_compat_wins_over_the_shipped_preset():
    """`--set model.compat=null` on the shipped anomalyclip config switches its numerics off; one option
    set against the preset is refused with the way to switch the preset off."""
    assert load_config("anomalyclip").model.precision == "fp32"
    off = config_with_overrides("anomalyclip", {"model.compat": None}, "--set").model
    defaults = RunConfig().model
    assert (off.compat, off.global_token_ln_post, off.pos_embed_interpolation, off.precision) == \
        (None, defaults.global_token_ln_post, defaults.pos_embed_interpolation, defaults.precision)
    assert off.feature_layers == (24,)  # the rest of the shipped config stays
    one = config_with_overrides("anomalyclip", {"model.compat": None, "model.precision": "fp32"}, "--set").model
    assert (one.precision, one.pos_embed_interpolation) == ("fp32", "bicubic")
    with pytest.raises(ConfigError, match=r"--set: .*but it is 'bf16'; drop one of the two, or set model.compat: "
                                          r"null to switch the anomalyclip preset off$"):
        config_with_overrides("anomalyclip", {"model.precision": "bf16"}, "--set")


@pytest.fixture(scope="module")
def native_weights(tmp_path_factory):
    """A random tiny CLIP at its native 112 px (7×7 grid), saved as a weights file."""
    register_tiny_backbone()
    torch.manual_seed(4)
    clip = open_clip.create_model("wmoe-tiny-quickgelu", pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(clip.state_dict(), path)
    return path, clip.state_dict()


def _backbone(weights, image_size=112, **options):
    m = dataclasses.replace(load_config("tiny").model, pretrained=str(weights), image_size=image_size, **options)
    return FrozenCLIP(m)


def _bilinear_resize(grid: np.ndarray, out: int) -> np.ndarray:
    """Bilinear resize (h,w,c) → (out,out,c) with half-pixel centres, clamped at the borders (align_corners=False)."""
    n = grid.shape[0]
    src = np.maximum((np.arange(out) + 0.5) * n / out - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (src - i0)[:, None]
    rows = grid[i0] * (1 - w[..., None]) + grid[i1] * w[..., None]
    return rows[:, i0] * (1 - w[None]) + rows[:, i1] * w[None]


def test_bilinear_grid_resize_changes_the_positional_embedding_only(native_weights):
    path, state = native_weights
    bilinear = _backbone(path, image_size=160, pos_embed_interpolation="bilinear")
    bicubic = _backbone(path, image_size=160)
    native = state["visual.positional_embedding"].numpy()
    expected = _bilinear_resize(native[1:].reshape(7, 7, -1), 10).reshape(100, -1)
    pos = bilinear.clip.visual.positional_embedding.detach().numpy()
    np.testing.assert_allclose(pos[1:], expected, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(pos[0], native[0])
    assert bilinear.grid == bicubic.grid == (10, 10)
    assert not np.allclose(bicubic.clip.visual.positional_embedding.detach().numpy(), pos, atol=1e-4)
    for key, value in bilinear.clip.state_dict().items():
        if key != "visual.positional_embedding":
            assert torch.equal(value, bicubic.clip.state_dict()[key]), key
    assert bilinear.encode_image(torch.zeros(1, 3, 160, 160))[1].shape == (1, 4, 100, 64)


def test_global_token_without_ln_post_changes_the_global_token_only(native_weights):
    path, _ = native_weights
    plain, compat = _backbone(path), _backbone(path, global_token_ln_post=False)
    images = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    g, patches, _ = plain.encode_image(images)
    g_c, patches_c, _ = compat.encode_image(images)
    torch.testing.assert_close(patches_c, patches, atol=0, rtol=0)
    visual = plain.clip.visual
    captured = {}
    handle = visual.ln_post.register_forward_hook(lambda mod, inp, res: captured.update(x=inp[0]))
    with torch.no_grad():
        reference = plain.clip.encode_image(images)
    handle.remove()
    torch.testing.assert_close(g, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(g_c, captured["x"][:, 0] @ visual.proj, atol=1e-5, rtol=1e-4)


def test_precision_fp32_runs_the_backbone_in_fp32_under_autocast(native_weights):
    path, _ = native_weights
    fp32, bf16 = _backbone(path, precision="fp32"), _backbone(path, precision="bf16")
    images = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    ids = open_clip.tokenize(["a photo of a damaged cable."])
    reference = fp32.encode_image(images)
    reference_text = fp32.encode_text(fp32.embed_tokens(ids), ids.argmax(-1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        forced = fp32.encode_image(images)
        forced_text = fp32.encode_text(fp32.embed_tokens(ids), ids.argmax(-1))
    for ours, ref in zip(forced, reference):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, ref, atol=0, rtol=0)
    torch.testing.assert_close(forced_text, reference_text, atol=0, rtol=0)
    # The configured precision, not the caller's autocast, decides: bf16 runs in bf16 without one.
    assert bf16.encode_image(images)[1].dtype == torch.bfloat16


def _open_clip_global(visual, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's own modules (its transformer, batch first in open_clip 3.x) on input tokens (B,n,W)."""
    assert visual.transformer.batch_first
    x = visual.transformer(visual.ln_pre(tokens))
    return visual.ln_post(x[:, 0]) @ visual.proj


def test_encode_tokens_is_open_clips_transformer_on_any_token_subset():
    cfg = dataclasses.replace(load_config("tiny").model, backbone="wmoe-tiny-gelu", image_size=112, feature_layers=(4,),
                              vv_attention=False)
    backbone = FrozenCLIP(cfg)
    images = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(3))
    tokens = backbone.embed_image(images)
    assert tokens.shape == (2, 1 + 49, 64)
    with torch.no_grad():
        # All tokens: CLIP's image embedding, as open_clip computes it from the pixels.
        torch.testing.assert_close(backbone.encode_tokens(tokens), backbone.clip.visual(images), atol=1e-5, rtol=1e-5)
        # Two windows of one image in one batch: each attends within itself only.
        a, b = tokens[0, [0, 1, 2, 8, 9]], tokens[0, [0, 41, 42, 48, 49]]
        both = backbone.encode_tokens(torch.stack([a, b]))
        reference = _open_clip_global(backbone.clip.visual, torch.stack([a, b]))
        torch.testing.assert_close(both, reference, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(both[1], backbone.encode_tokens(b[None])[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(both[0], both[1], atol=1e-3)


def test_shipped_weights_are_normalised_as_the_data_pipeline_normalises():
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from wmoe_clip.model.backbone import check_normalisation

    for backbone, tag in (("ViT-L-14-336-quickgelu", "openai"), ("ViT-B-16-plus-240", "laion400m_e31")):
        pre = open_clip.get_pretrained_cfg(backbone, tag)
        assert (tuple(pre["mean"]), tuple(pre["std"])) == (OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)
        check_normalisation(dataclasses.replace(RunConfig().model, backbone=backbone, pretrained=tag))
    with pytest.raises(WMoEError, match="normalised with mean"):
        check_normalisation(dataclasses.replace(RunConfig().model, backbone="ViT-L-14", pretrained="laion2b_s32b_b82k"))
