"""Import of the authors' released AnomalyCLIP checkpoints (github zqhang/AnomalyCLIP, ``checkpoints/``).

Their ``train.py`` saves ``torch.save({"prompt_learner": prompt_learner.state_dict()})``; the state
dict of ``AnomalyCLIP_PromptLearner`` (``prompt_ensemble.py``) holds, for ``n_ctx`` context vectors,
``depth`` and ``t_n_ctx`` deep tokens and text width W:

- ``ctx_pos``, ``ctx_neg`` (1, 1, n_ctx, W): the context vectors of "[V..] object." / "[V..] damaged object.";
- ``compound_prompts_text.{0..depth-2}`` (t_n_ctx, W): the deep tokens of text blocks 1..depth-1;
- ``compound_prompt_projections.{i}.weight`` (896, W) / ``.bias`` (896,): created but never used by
  their forward pass, so not imported;
- buffers: ``token_prefix_{pos,neg}`` (1, 1, 1, W) and ``token_suffix_{pos,neg}`` (1, 1, 77-1-n_ctx, W),
  CLIP's token embeddings around the context; ``tokenized_prompts_{pos,neg}`` (1, 1, 77) the token ids
  of "X X … X object." / "X X … X damaged object.".

The file is read with ``torch.load(weights_only=True)``: a pickle that would run code is refused
before anything runs. Anything but this exact key set with these shapes is refused with one line
naming the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...config import RunConfig
from ...errors import WMoEError
from ...io import load_failure, load_plain_tensors
from ..backbone import text_tower_size
from ..checkpoint import load_learnable_state
from .model import AnomalyCLIP
from .settings import Settings

ROOT_KEY = "prompt_learner"
# Width of their (unused) compound_prompt_projections: nn.Linear(ctx_dim, 896).
PROJECTION_WIDTH = 896
# Largest difference tolerated between their stored token embeddings and the backbone's (fp16 storage
# rounds CLIP's embeddings by < 1e-4; other CLIP weights differ by ~1e-2).
TOKEN_EMBEDDING_ATOL = 1e-3
_STATES = (("pos", "normal_suffix"), ("neg", "abnormal_suffix"))


@dataclass
class ImportedPrompts:
    """An AnomalyCLIP checkpoint in this project's terms."""

    state: dict[str, torch.Tensor]  # learnable state of AnomalyCLIP: prompts.context, prompts.deep
    prefix: torch.Tensor  # (2,1,W) their token embeddings before the context (start token)
    suffix: torch.Tensor  # (2,T-1-n,W) their token embeddings after the context


def expected_shapes(cfg: Settings, width: int, context_length: int) -> dict[str, tuple[int, ...]]:
    """Every key of their prompt-learner state dict with its shape."""
    n = cfg.prompt_length
    shapes: dict[str, tuple[int, ...]] = {}
    for tag, _ in _STATES:
        shapes[f"ctx_{tag}"] = (1, 1, n, width)
        shapes[f"token_prefix_{tag}"] = (1, 1, 1, width)
        shapes[f"token_suffix_{tag}"] = (1, 1, context_length - 1 - n, width)
        shapes[f"tokenized_prompts_{tag}"] = (1, 1, context_length)
    for i in range(cfg.deep_prompt_depth - 1):
        shapes[f"compound_prompts_text.{i}"] = (cfg.deep_prompt_length, width)
        shapes[f"compound_prompt_projections.{i}.weight"] = (PROJECTION_WIDTH, width)
        shapes[f"compound_prompt_projections.{i}.bias"] = (PROJECTION_WIDTH,)
    return shapes


def placeholder_ids(cfg: Settings, suffix: str, context_length: int) -> list[int]:
    """Token ids their code gives the prompt: ``<sot> X × n_ctx suffix <eot>``, padded with 0."""
    import open_clip

    text = " ".join(["X"] * cfg.prompt_length) + " " + suffix
    return open_clip.tokenize([text], context_length=context_length)[0].tolist()


def _check(state: dict, cfg: Settings, width: int, context_length: int, source: str) -> None:
    def refuse(problem: str) -> WMoEError:
        return WMoEError(f"{source} is not an AnomalyCLIP checkpoint for this model: {problem} "
                         f"(expected model.anomalyclip {cfg.prompt_length} context vectors, depth "
                         f"{cfg.deep_prompt_depth}, {cfg.deep_prompt_length} deep tokens, text width {width})")

    shapes = expected_shapes(cfg, width, context_length)
    missing = [k for k in shapes if k not in state]
    if missing:
        raise refuse(f"missing key(s) {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else ""))
    unexpected = sorted(str(k) for k in state if k not in shapes)
    if unexpected:
        raise refuse(f"unexpected key(s) {', '.join(unexpected[:6])}" + (" ..." if len(unexpected) > 6 else ""))
    for key, shape in shapes.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise refuse(f"{key} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != shape:
            raise refuse(f"{key} has shape {tuple(value.shape)}, expected {shape}")
        if key.startswith("tokenized_prompts_") == value.is_floating_point():
            raise refuse(f"{key} has dtype {value.dtype}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise refuse(f"{key} holds non-finite values")
    for tag, suffix_field in _STATES:
        suffix = getattr(cfg, suffix_field)
        if state[f"tokenized_prompts_{tag}"].flatten().tolist() != placeholder_ids(cfg, suffix, context_length):
            raise refuse(f"tokenized_prompts_{tag} is not the tokenisation of '{'X ' * cfg.prompt_length}{suffix}'")


def read_anomalyclip_checkpoint(path: str | Path, cfg: Settings, width: int = 768,
                                context_length: int = 77) -> ImportedPrompts:
    """Validate an AnomalyCLIP checkpoint and convert it; ``width`` is the text width (768 for ViT-L-14-336)."""
    path = Path(path)
    if not path.is_file():
        raise WMoEError(f"AnomalyCLIP checkpoint {path} does not exist")
    try:
        payload = load_plain_tensors(path)
    except Exception as exc:  # weights_only refusals, truncated or foreign files
        raise WMoEError(f"{path} is refused: torch.load(weights_only=True) cannot read it as plain tensors "
                        f"({load_failure(exc)}); nothing in it was run") from None
    if not isinstance(payload, dict) or set(payload) != {ROOT_KEY}:
        found = sorted(map(str, payload)) if isinstance(payload, dict) else type(payload).__name__
        raise WMoEError(f"{path} is not an AnomalyCLIP checkpoint: expected a dict with the single key "
                        f"{ROOT_KEY!r}, found {found}")
    state = payload[ROOT_KEY]
    if not isinstance(state, dict):
        raise WMoEError(f"{path}: {ROOT_KEY!r} is a {type(state).__name__}, not a state dict")
    _check(state, cfg, width, context_length, str(path))
    tags = [tag for tag, _ in _STATES]
    deep = [state[f"compound_prompts_text.{i}"].float() for i in range(cfg.deep_prompt_depth - 1)]
    return ImportedPrompts(
        state={
            "prompts.context": torch.cat([state[f"ctx_{t}"][0] for t in tags]).float(),
            "prompts.deep": torch.stack(deep) if deep else torch.zeros(0, cfg.deep_prompt_length, width),
        },
        prefix=torch.cat([state[f"token_prefix_{t}"][0] for t in tags]).float(),
        suffix=torch.cat([state[f"token_suffix_{t}"][0] for t in tags]).float(),
    )


def load_anomalyclip_checkpoint(model: AnomalyCLIP, path: str | Path) -> None:
    """Load an AnomalyCLIP checkpoint into ``model`` after checking that it was trained on the same CLIP."""
    backbone = model.backbone
    imported = read_anomalyclip_checkpoint(path, model.cfg.model.anomalyclip, backbone.text_width,
                                           backbone.context_length)
    n = model.cfg.model.anomalyclip.prompt_length
    with torch.no_grad():
        ours = backbone.embed_tokens(model.prompts.token_ids).float().cpu()
    diff = max(float((ours[:, :1] - imported.prefix).abs().max()), float((ours[:, 1 + n:] - imported.suffix).abs().max()))
    if diff > TOKEN_EMBEDDING_ATOL:
        raise WMoEError(f"{path} was trained with other CLIP weights than model.pretrained = "
                        f"{model.cfg.model.pretrained!r} (its stored token embeddings differ by up to {diff:.3g}); "
                        f"AnomalyCLIP's released prompts need OpenAI's ViT-L-14-336")
    load_learnable_state(model, imported.state, str(path))


def import_anomalyclip(cfg: RunConfig, path: str | Path) -> AnomalyCLIP:
    """The AnomalyCLIP model of ``cfg`` holding the released checkpoint ``path``. The file is checked against
    ``cfg``'s text tower before the model (and its CLIP weights) is built; the token embeddings after."""
    width, context_length = text_tower_size(cfg.model.backbone)
    read_anomalyclip_checkpoint(path, cfg.model.anomalyclip, width, context_length)
    model = AnomalyCLIP(cfg).eval()
    load_anomalyclip_checkpoint(model, path)
    return model
