"""Learnable prompts: "a photo of a good [V1..VM]." and "a photo of a damaged [V1..VM]." (docs/METHOD.md §1).

The class slot of each template holds M learnable token vectors per state (object-agnostic). The
token ids of the templates are fixed; the slots are replaced by ``V + shift`` where ``shift`` is
CTDS's per-image ``P(z)`` (absent without CTDS, so the prompts are shared by all images).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

# CoOp's initialisation of learnable context vectors.
PROMPT_INIT_STD = 0.02


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def template_ids(prefix: str, slots: int, context_length: int, suffix: str = ".") -> tuple[list[int], int]:
    """Token ids of ``<sot> prefix X..X suffix <eot>`` padded with 0, and the position of the first slot."""
    tok = _tokenizer()
    sot, eot = tok.encoder["<start_of_text>"], tok.encoder["<end_of_text>"]
    head = [sot] + tok.encode(prefix)
    # The slot ids are placeholders: their embeddings are always replaced.
    ids = head + [0] * slots + tok.encode(suffix) + [eot]
    if len(ids) > context_length:
        raise ValueError(f"prompt {prefix!r}…{suffix!r} with {slots} slots exceeds the context length {context_length}")
    return ids + [0] * (context_length - len(ids)), len(head)


class PromptLearner(nn.Module):
    """The two learnable prompts ``prefix [V1..VM] suffix``; returns their token embeddings and EOT positions."""

    def __init__(self, normal: str, abnormal: str, length: int, width: int, context_length: int,
                 suffixes: tuple[str, str] = (".", ".")):
        super().__init__()
        rows, starts = zip(*(template_ids(p, length, context_length, s) for p, s in zip((normal, abnormal), suffixes)))
        ids = torch.tensor(rows, dtype=torch.long)
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("eot_index", ids.argmax(dim=-1), persistent=False)
        self.starts = starts
        self.length = length
        self.context = nn.Parameter(torch.randn(2, length, width) * PROMPT_INIT_STD)

    def forward(self, token_embedding: nn.Embedding, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings (B,2,T,W) of the normal and abnormal prompts; B = 1 without ``shift``, which is one
        vector per image for every slot (B,W) or one per slot (B,2,M,W)."""
        with torch.no_grad():
            base = token_embedding(self.token_ids)
        slots = self.context.unsqueeze(0)
        if shift is not None:
            per_image = shift[:, None, None, :] if shift.dim() == 2 else shift
            slots = slots + per_image.to(slots.dtype)
        b = slots.shape[0]
        rows = []
        for state, start in enumerate(self.starts):
            fixed = base[state].to(slots.dtype).expand(b, -1, -1)
            rows.append(torch.cat([fixed[:, :start], slots[:, state], fixed[:, start + self.length:]], dim=1))
        return torch.stack(rows, dim=1)
