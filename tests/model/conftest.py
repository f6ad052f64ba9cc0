import pytest
import torch

from wmoe_clip.config import load_config
from wmoe_clip.model import build_model


@pytest.fixture(scope="session")
def tiny_cfg():
    return load_config("tiny")


@pytest.fixture
def build_tiny():
    """Build the tiny model of a variant with a fixed seed for the learnable modules."""

    def build(variant="full", seed=0):
        torch.manual_seed(seed)
        return build_model(load_config("tiny", variant))

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
