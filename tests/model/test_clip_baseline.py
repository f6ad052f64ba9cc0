"""The training-free ``clip`` baseline against open_clip's own CLIP: same prompts, same tokens, no parameters."""

import dataclasses

import open_clip
import pytest
import torch
import torch.nn.functional as F

from wmoe_clip.config import load_config
from wmoe_clip.errors import WMoEError
from wmoe_clip.model import build_model
from wmoe_clip.model.registry import get


@pytest.fixture(scope="module")
def clip_model():
    cfg = load_config("tiny")
    return build_model(cfg.for_method("clip")).eval()


def reference(model, images, classes, scale):
    """The baseline written directly on open_clip's model: encode_text of the two sentences, the
    pooled image embedding, and the last block's tokens after ln_post, projected."""
    clip = model.backbone.clip
    visual = clip.visual
    visual.output_tokens = True
    try:
        pooled, tokens = visual(images)
    finally:
        visual.output_tokens = False
    plain = F.normalize(tokens @ visual.proj, dim=-1)
    g = F.normalize(pooled, dim=-1)
    maps, scores = [], []
    for i, cls in enumerate(classes):
        words = cls.replace("_", " ")
        ids = open_clip.tokenize([f"a photo of a normal {words}", f"a photo of an anomalous {words}"])
        text = F.normalize(clip.encode_text(ids), dim=-1)
        probs = (scale * plain[i] @ text.T).softmax(dim=-1)[:, 1]
        side = int(probs.numel() ** 0.5)
        maps.append(F.interpolate(probs.reshape(1, 1, side, side), size=images.shape[-2:], mode="bilinear",
                                  align_corners=False)[0, 0])
        scores.append((scale * g[i] @ text.T).softmax(dim=-1)[1])
    return torch.stack(maps), torch.stack(scores)


def test_clip_has_no_learnable_parameters_and_no_training(clip_model):
    assert clip_model.learnable_parameters() == []
    assert get("clip").trains is False


def test_maps_and_scores_equal_open_clips_model_with_class_name_prompts(clip_model, images):
    classes = ["metal_nut", "bottle", "metal_nut", "pcb1"]
    with torch.no_grad():
        out = clip_model(images, classes)
        scale = float(clip_model.backbone.clip.logit_scale.exp())
        maps, scores = reference(clip_model, images, classes, scale)
    assert out.layer_maps.shape == (4, 1, *images.shape[-2:])
    torch.testing.assert_close(out.anomaly_map, maps, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.global_score, scores, atol=1e-5, rtol=0)
    # The image score is the global token's alone (AnomalyCLIP's Table 1 protocol), with or without a map.
    smoothed = torch.rand(4, *images.shape[-2:])
    torch.testing.assert_close(clip_model.eval_image_score(out.global_score, smoothed), out.global_score)
    # A class name changes the prompts, hence the scores: the prompts are class-specific.
    with torch.no_grad():
        other = clip_model(images, ["screw"] * 4)
    assert not torch.allclose(other.global_score, out.global_score)


def test_temperature_overrides_clips_learned_scale(images):
    cfg = load_config("tiny")
    cfg = cfg.for_method("clip")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, clip=dataclasses.replace(cfg.model.clip, temperature=0.5)))
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(images, ["bottle"] * 4)
        _, scores = reference(model, images, ["bottle"] * 4, 2.0)
    torch.testing.assert_close(out.global_score, scores, atol=1e-5, rtol=0)


def test_clip_needs_one_class_name_per_image(clip_model, images):
    with pytest.raises(WMoEError, match="4 image.*need as many class names, got 2"):
        clip_model(images, ["bottle", "pcb1"])
