"""Plain CLIP, the training-free baseline of AnomalyCLIP's Table 1: class-name prompts on CLIP's own
last-block patch tokens."""

from .model import CLIPBaseline

__all__ = ["CLIPBaseline"]
