"""WinCLIP on the tiny GELU backbone (7×7 patches) against hand-computed values and a brute-force
reference that builds every window from pixel crops and runs open_clip's own transformer on it."""

import dataclasses

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from wmoe_clip.config import load_config
from wmoe_clip.errors import WMoEError
from wmoe_clip.model import build_model
from wmoe_clip.model.winclip.prompts import sentences, text_embeddings
from wmoe_clip.model.winclip.settings import Settings
from wmoe_clip.model.winclip.windows import harmonic_aggregate, window_embeddings, window_indices

GRID = 7
PATCH = 16


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny_winclip")


def _model(cfg, **settings):
    model_cfg = dataclasses.replace(cfg.model, winclip=dataclasses.replace(cfg.model.winclip, **settings))
    return build_model(dataclasses.replace(cfg, model=model_cfg))


@pytest.fixture(scope="module")
def model(cfg):
    return _model(cfg)


# ------------------------------------------------------------------------------------------- windows


def test_window_indices_are_the_hand_listed_patches():
    assert window_indices((3, 3), 2).tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    assert window_indices((2, 3), 2).tolist() == [[0, 1, 3, 4], [1, 2, 4, 5]]
    two = window_indices((GRID, GRID), 2)
    assert two.shape == (36, 4)
    assert two[0].tolist() == [0, 1, 7, 8] and two[1].tolist() == [1, 2, 8, 9]
    assert two[6].tolist() == [7, 8, 14, 15] and two[35].tolist() == [40, 41, 47, 48]
    three = window_indices((GRID, GRID), 3)
    assert three.shape == (25, 9)
    assert three[0].tolist() == [0, 1, 2, 7, 8, 9, 14, 15, 16]
    assert three[4].tolist() == [4, 5, 6, 11, 12, 13, 18, 19, 20]
    assert three[24].tolist() == [32, 33, 34, 39, 40, 41, 46, 47, 48]
    assert window_indices((5, 5), 3, stride=2)[:, 0].tolist() == [0, 2, 10, 12]
    with pytest.raises(WMoEError, match="do not tile"):
        window_indices((6, 6), 3, stride=2)  # 6 - 3 = 3 is not a multiple of 2
    with pytest.raises(WMoEError, match="do not tile"):
        window_indices((2, 2), 3)


def test_harmonic_aggregation_on_a_hand_case():
    # 3×3 patches, four 2×2 windows scored 1, 1/2, 1/4, 1/5.
    scores = torch.tensor([[1.0, 0.5, 0.25, 0.2]], dtype=torch.float64)
    expected = [1.0, 2 / (1 + 2), 0.5,
                2 / (1 + 4), 4 / (1 + 2 + 4 + 5), 2 / (2 + 5),
                0.25, 2 / (4 + 5), 0.2]
    got = harmonic_aggregate(scores, window_indices((3, 3), 2), 9)
    assert got.shape == (1, 9)
    np.testing.assert_allclose(got[0].numpy(), expected, rtol=1e-12)


# ------------------------------------------------------------------------------------------- prompts


def test_the_prompt_ensemble_is_every_state_in_every_template():
    normal, abnormal = sentences(Settings(), "metal_nut")
    assert (len(normal), len(abnormal)) == (7 * 21, 4 * 21)
    assert normal[0] == "a cropped photo of the metal nut."
    assert "a bright photo of a flawless metal nut." in normal
    assert "a close-up photo of the metal nut without defect." in normal
    assert normal.count("a jpeg corrupted photo of the perfect metal nut.") == 2
    assert abnormal[0] == "a cropped photo of the damaged metal nut."
    assert abnormal[-1] == "a photo of a metal nut with damage for anomaly detection."
    kept = sentences(Settings(class_name_spaces=False), "metal_nut")
    assert kept[1][0] == "a cropped photo of the damaged metal_nut."


@pytest.mark.parametrize("average", ["raw", "normalised"])
def test_the_text_embedding_averages_exactly_the_ensembles_sentences(model, average):
    settings = dataclasses.replace(model.settings, prompt_average=average)
    got = text_embeddings(model.backbone, settings, "bottle", torch.device("cpu"))
    clip = model.backbone.clip
    for row, group in enumerate(sentences(settings, "bottle")):
        with torch.no_grad():  # open_clip's own text path, on full-length sequences
            each = clip.encode_text(open_clip.tokenize(group), normalize=average == "normalised")
        assert each.shape[0] == len(group)
        torch.testing.assert_close(got[row], F.normalize(each.mean(dim=0), dim=0), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------- window embeddings


def _images(n=2, seed=5):
    return torch.randn(n, 3, GRID * PATCH, GRID * PATCH, generator=torch.Generator().manual_seed(seed))


def _brute_window(visual, image: torch.Tensor, patches: list[int]) -> torch.Tensor:
    """One window's embedding from scratch: each patch cropped from the pixels through the patch
    embedding, its positional embedding added, the class token first; open_clip's transformer on that
    one sequence."""
    pos = visual.positional_embedding
    tokens = [visual.class_embedding + pos[0]]
    for p in patches:
        r, c = divmod(p, GRID)
        crop = image[:, r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH]
        tokens.append(visual.conv1(crop[None]).flatten() + pos[1 + p])
    x = visual.transformer(visual.ln_pre(torch.stack(tokens)[None]))
    return (visual.ln_post(x[:, 0]) @ visual.proj)[0]


def test_window_embeddings_are_each_windows_own_transformer_pass(model):
    images = _images()
    visual = model.backbone.clip.visual
    tokens = model.backbone.embed_image(images)
    for size in (2, 3):
        windows = window_indices((GRID, GRID), size)
        got = window_embeddings(model.backbone, tokens, windows)
        assert got.shape == (2, len(windows), 64)
        with torch.no_grad():
            for b in range(2):
                for w in (0, 7, len(windows) - 1):
                    ref = _brute_window(visual, images[b], windows[w].tolist())
                    torch.testing.assert_close(got[b, w], ref, atol=1e-5, rtol=1e-5)
        # No window attends to another's tokens: all embeddings differ (the batch-first trap makes them equal).
        flat = F.normalize(got.flatten(0, 1), dim=-1)
        cos = flat @ flat.T
        assert (cos - torch.eye(len(flat))).max() < 0.9999


# ------------------------------------------------------------------------------------------- the map


def _brute_map(model, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The patch map (GRID,GRID) from brute-force window embeddings, with loops over patches and
    windows, and the whole image's score."""
    s = model.settings
    visual = model.backbone.clip.visual

    def score(e):
        logits = torch.stack([F.cosine_similarity(e, t, dim=0) for t in text]) / s.temperature
        return logits.softmax(dim=0)[1].item()

    with torch.no_grad():
        image_score = score((visual(image[None]))[0])
    per_scale = [np.full((GRID, GRID), image_score)]
    for k in s.window_sizes:
        inverse_sum, count = np.zeros((GRID, GRID)), np.zeros((GRID, GRID))
        for top in range(GRID - k + 1):
            for left in range(GRID - k + 1):
                cells = [(top + i, left + j) for i in range(k) for j in range(k)]
                with torch.no_grad():
                    w = score(_brute_window(visual, image, [r * GRID + c for r, c in cells]))
                for r, c in cells:
                    inverse_sum[r, c] += 1 / w
                    count[r, c] += 1
        per_scale.append(count / inverse_sum)
    return torch.tensor(len(per_scale) / sum(1 / m for m in per_scale), dtype=torch.float32), image_score


def test_the_map_is_the_brute_force_reference(model):
    images = _images(1, seed=9)
    out = model(images, ["bottle"])
    text = model.text_features("bottle", torch.device("cpu"))
    patch_map, image_score = _brute_map(model, images[0], text)
    expected = F.interpolate(patch_map[None, None], size=(112, 112), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(out.anomaly_map[0], expected, atol=1e-5, rtol=1e-4)
    assert out.layer_maps.shape == (1, 1, 112, 112)
    # The zero-shot image score is the whole image's score alone.
    assert out.global_score.item() == pytest.approx(image_score, rel=1e-5)
    torch.testing.assert_close(out.image_score, out.global_score)


def test_a_local_defect_gives_a_map_that_peaks_on_it(cfg):
    model = _model(cfg)
    image = torch.full((1, 3, 112, 112), -1.0)
    image[:, :, 48:80, 48:80] = 2.0  # a bright square on patches (3, 3) to (4, 4)
    feats = model.encode_image(image)
    two = window_indices((GRID, GRID), 2)
    defect_window = next(i for i, w in enumerate(two.tolist()) if w == [24, 25, 31, 32])
    # Hand-made text: "abnormal" is the embedding of the 2×2 window on the defect, "normal" the one of
    # the top-left window, far from it.
    text = F.normalize(torch.stack([feats.windows[0][0, 0], feats.windows[0][0, defect_window]]).float(), dim=-1)
    model._text[("widget", "cpu")] = text
    out = model.forward_features(feats, ["widget"])
    scale_maps = out.aux["scale_maps"][0]  # whole image, 2×2, 3×3
    assert scale_maps.shape == (3, GRID, GRID)
    assert torch.all(scale_maps[0] == scale_maps[0, 0, 0])
    for window_map in scale_maps[1:]:
        row, col = divmod(int(window_map.argmax()), GRID)
        assert 2 <= row <= 5 and 2 <= col <= 5, (row, col)  # patches of windows that overlap the square
    fused = out.anomaly_map[0]
    assert fused.max() > 2 * fused.min()
    row, col = divmod(int(fused.argmax()), 112)
    assert 40 <= row < 88 and 40 <= col < 88  # on the square, give or take half a patch


def test_other_choices_change_what_they_name(cfg, model):
    images = _images(2, seed=11)
    base = model(images, ["a", "b"])
    no_image = _model(cfg, map_includes_image=False)(images, ["a", "b"])
    assert no_image.aux["scale_maps"].shape[1] == 2
    torch.testing.assert_close(no_image.global_score, base.global_score)
    assert not torch.allclose(no_image.anomaly_map, base.anomaly_map)
    mixed = _model(cfg, image_score="mean_with_map_max")
    smoothed = base.anomaly_map
    expected = (base.global_score + smoothed.flatten(1).amax(dim=1)) / 2
    torch.testing.assert_close(mixed.eval_image_score(base.global_score, smoothed), expected)
    clip_scale = _model(cfg, temperature=None)
    assert clip_scale.scale() == pytest.approx(float(model.backbone.clip.logit_scale.exp()))


def test_winclip_is_refused_features_without_windows(model):
    feats = model.encode_image(_images(1))
    from wmoe_clip.model import ImageFeatures

    with pytest.raises(WMoEError, match="without the feature cache"):
        model.forward_features(ImageFeatures(*feats[:3]), ["bottle"])
    with pytest.raises(WMoEError, match="class name"):
        model.forward_features(feats, None)


def test_winclip_shares_no_encoder_pass_with_the_backbones_methods(cfg):
    from wmoe_clip.model.encoder_pass import backbone_digest, encoder_pass_key

    clip = cfg.for_method("clip")
    assert encoder_pass_key(cfg)["image_encoder"] == "winclip"
    assert "image_encoder" not in encoder_pass_key(clip)
    assert backbone_digest(cfg) != backbone_digest(clip)


def test_settings_problems_name_their_keys(cfg):
    from wmoe_clip.model.winclip.settings import problems

    bad = dataclasses.replace(cfg.model.winclip, templates=("a photo of {cls}",), window_stride=3, temperature=0,
                              scale_fusion="max")
    found = problems(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, winclip=bad)))
    assert any(p.startswith("model.winclip.templates") for p in found)
    assert any(p.startswith("model.winclip.window_stride") for p in found)
    assert any(p.startswith("model.winclip.temperature") for p in found)
    assert any(p.startswith("model.winclip.scale_fusion") for p in found)
    assert problems(cfg) == []
