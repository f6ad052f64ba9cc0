"""WinCLIP's compositional prompt ensemble: every state word of a class (normal or abnormal) in every
template, averaged into one text embedding per state."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbone import FrozenCLIP
from .settings import Settings


def sentences(settings: Settings, cls: str) -> tuple[list[str], list[str]]:
    """The normal and the abnormal sentences of class ``cls``: states × templates, state-major."""
    name = cls.replace("_", " ") if settings.class_name_spaces else cls

    def ensemble(states: tuple[str, ...]) -> list[str]:
        return [t.format(state=s.format(cls=name)) for s in states for t in settings.templates]

    return ensemble(settings.normal_states), ensemble(settings.abnormal_states)


@torch.no_grad()
def text_embeddings(backbone: FrozenCLIP, settings: Settings, cls: str, device: torch.device,
                    truncate: bool = True) -> torch.Tensor:
    """(2,D) L2-normalised: the normal and the abnormal ensemble of ``cls``, each the mean of its
    sentences' embeddings (raw or normalised first: ``prompt_average``), in float32."""
    import open_clip

    out = []
    for group in sentences(settings, cls):
        ids = open_clip.tokenize(group, context_length=backbone.context_length).to(device)
        text = backbone.encode_text(backbone.embed_tokens(ids), ids.argmax(dim=-1), truncate=truncate).float()
        if settings.prompt_average == "normalised":
            text = F.normalize(text, dim=-1)
        out.append(text.mean(dim=0))
    return F.normalize(torch.stack(out), dim=-1)
