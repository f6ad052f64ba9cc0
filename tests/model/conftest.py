import dataclasses

import pytest
import torch

from wmoe_clip.config import load_config
from wmoe_clip.model import build_model


@pytest.fixture(scope="session")
def tiny_cfg():
    return load_config("tiny")


@pytest.fixture
def build_tiny():
    """Build the tiny model of a variant with a fixed seed for the learnable modules (and optional
    changes to the model config: keys of WMoE-CLIP's settings go to ``model.wmoe_clip``)."""

    def build(variant="full", seed=0, **changes):
        cfg = load_config("tiny", variant)
        own = {f.name for f in dataclasses.fields(cfg.model.wmoe_clip)}
        settings = dataclasses.replace(cfg.model.wmoe_clip, **{k: v for k, v in changes.items() if k in own})
        model = dataclasses.replace(cfg.model, wmoe_clip=settings, **{k: v for k, v in changes.items() if k not in own})
        torch.manual_seed(seed)
        return build_model(dataclasses.replace(cfg, model=model))

    return build


@pytest.fixture
def images(tiny_cfg):
    s = tiny_cfg.model.image_size
    return torch.randn(4, 3, s, s, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def masks(tiny_cfg):
    s = tiny_cfg.model.image_size
    m = torch.zeros(4, s, s)
    m[1, 10:40, 20:60] = 1
    m[3, 60:100, 5:30] = 1
    return m


@pytest.fixture
def labels():
    return torch.tensor([0, 1, 0, 1])


def _closed_form_counts(model):
    """Parameters of each learnable module from docs/METHOD.md's shapes (weights and biases of each map)."""
    m = model.cfg.model.wmoe_clip
    d, w, L = model.backbone.embed_dim, model.backbone.text_width, len(model.cfg.model.feature_layers)
    lat, hid = m.ctds.latent_dim, m.ctds.decoder_hidden
    identity_p = lat == w and m.init == "default"
    ctds = 2 * (d * lat + lat) + (lat * hid + hid) + (hid * d + d) + (0 if identity_p else lat * w + w)
    r, a = m.wcma.reduction, m.wcma.attn_dim
    wcma_layer = (d * (d // r) + d // r) + (d // r * d + d) + (d * d + d) + 3 * (d * a + a) + (a * d + d)
    da, e, h = m.sa_moe.adapter_dim, m.sa_moe.num_experts, m.sa_moe.expert_hidden
    sa_moe = L * (d * da + da) + (L * da * e + e) + e * (L * da * h + h + h * d + d)
    return {"prompts": 2 * m.prompt_length * w, "ctds": ctds, "wcma": L * wcma_layer, "sa_moe": sa_moe}


@pytest.fixture(scope="session")
def closed_form_counts():
    """Learnable parameters per module computed from the shapes docs/METHOD.md gives, not from the model."""
    return _closed_form_counts
