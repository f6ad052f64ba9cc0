"""AnomalyCLIP's object-agnostic prompts: ``[V1..V12] object.`` / ``[V1..V12] damaged object.`` plus
learnable deep text tokens (Zhou et al., ICLR 2024, §3.2 "object-agnostic text prompt design" and
"refinement of the textual space").

The context vectors fill the token positions right after the start token. Before each text block
1..depth-1 (0-based), positions 1..n of both prompts are replaced by that block's own deep tokens,
with no positional embedding. The deep tokens are rounded to float16 per prompt before use, as
AnomalyCLIP's text blocks do (``expand(...).half()``): imported prompts see exactly the values they were
trained with, and the gradients are rounded as theirs (per prompt, before the sum over the prompts).
"""

from __future__ import annotations

import torch
from torch import nn

from ..prompts import PROMPT_INIT_STD, PromptLearner
from .settings import Settings


class AnomalyCLIPPrompts(PromptLearner):
    """``context`` (2,M,W): the normal and abnormal context vectors; ``deep`` (depth-1,n,W): the deep tokens."""

    def __init__(self, cfg: Settings, width: int, context_length: int):
        super().__init__("", "", cfg.prompt_length, width, context_length,
                         suffixes=(cfg.normal_suffix, cfg.abnormal_suffix))
        self.deep = nn.Parameter(torch.randn(cfg.deep_prompt_depth - 1, cfg.deep_prompt_length, width) * PROMPT_INIT_STD)

    def deep_tokens(self) -> dict[int, torch.Tensor]:
        """Text block index → the tokens (2,n,W) replacing positions 1..n of its input (blocks 1..depth-1)."""
        return {block: tokens.expand(2, -1, -1).half().float() for block, tokens in enumerate(self.deep, start=1)}
