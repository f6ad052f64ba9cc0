"""The frozen CLIP backbone over open_clip: image tokens per layer and a text encoder on embeddings.

Both towers run their transformer blocks through :func:`_block`, which reads the weights of open_clip's
``ResidualAttentionBlock`` and computes attention with ``scaled_dot_product_attention``. Owning the
block loop is what allows two things open_clip does not offer:

- **value–value attention** on the patch path (AnomalyCLIP's DPAM, after CLIP Surgery): from
  ``vv_start`` on, a second stream accumulates ``softmax(v vᵀ/√d) v`` computed from the original
  stream's values, skipping the MLP; the class token and the deeper layers keep the original stream,
  so the global token is exactly CLIP's;
- CLIP's own **plain patch tokens** of the last block (the original stream, which runs anyway for the
  global token), for methods that localise with them;
- the **global token of a subset of the image tokens** (:meth:`FrozenCLIP.encode_tokens`), each subset a
  sequence of its own: window embeddings, as WinCLIP computes them;
- a **text encoder on token embeddings** (learnable prompt slots) that cuts the batch after its last
  EOT token: the text transformer is causal, so tokens after EOT never influence it; it can also
  replace token positions 1..n with given **deep tokens** before given blocks (MaPLe-style deep
  prompts, AnomalyCLIP's learnable text embeddings).

Both encoders run at ``model.precision``: bf16 or fp16 autocast, or fp32 with autocast switched off,
on whatever device the input is, whatever autocast state the caller has set. Two more options restore
other code bases' numerics (``model.compat``, which also sets fp32): the global token without
``ln_post``, and the positional grid resized bilinearly instead of open_clip's bicubic.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import WMoEError
from .encoder_pass import backbone_configuration
from .tiny import TINY_BACKBONES, register_tiny_backbone

CACHE_ENV = "WMOE_CLIP_CACHE"
# Autocast dtype of the frozen encoders per model.precision; None runs them in float32.
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def create_clip(cfg: ModelConfig) -> nn.Module:
    """Build the open_clip model of ``cfg``: weights from ``cfg.pretrained`` or seeded random ones.

    The visual positional grid (24×24 for ViT-L-14-336) becomes the grid of ``cfg.image_size`` (37×37
    at 518) once, at load: with ``pos_embed_interpolation: bicubic`` open_clip's checkpoint loader does
    it (``force_image_size``); with ``bilinear`` the model is built at its native size and resized here.
    """
    clip = _create_open_clip(cfg)
    if cfg.pos_embed_interpolation == "bilinear":
        resize_visual_grid(clip.visual, cfg.image_size, "bilinear")
    return clip


def _open_clip_config(backbone: str) -> dict[str, Any]:
    """open_clip's architecture config of ``backbone`` (the tiny ones registered first)."""
    import open_clip

    if backbone in TINY_BACKBONES:
        register_tiny_backbone()
    if backbone not in open_clip.list_models():
        raise WMoEError(f"unknown backbone {backbone!r} (model.backbone); open_clip knows e.g. ViT-L-14-336-quickgelu")
    return open_clip.get_model_config(backbone)


def check_normalisation(cfg: ModelConfig) -> None:
    """Refuse weights trained with another image normalisation than the one the data pipeline applies
    (OpenAI's CLIP mean and std, ``data.dataset.normalise``). open_clip records it per pretrained tag;
    both shipped backbones (OpenAI's ViT-L-14-336 and LAION-400M's ViT-B-16-plus-240) use OpenAI's."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    if cfg.pretrained is None or Path(cfg.pretrained).expanduser().is_file():
        return
    pre = open_clip.get_pretrained_cfg(cfg.backbone, cfg.pretrained)
    mean, std = tuple(pre.get("mean", OPENAI_DATASET_MEAN)), tuple(pre.get("std", OPENAI_DATASET_STD))
    if (mean, std) != (tuple(OPENAI_DATASET_MEAN), tuple(OPENAI_DATASET_STD)):
        raise WMoEError(f"{cfg.backbone}/{cfg.pretrained} was trained on images normalised with mean {mean}, std "
                        f"{std}; the data pipeline normalises with OpenAI CLIP's: choose other weights "
                        "(model.pretrained)")


def text_tower_size(backbone: str) -> tuple[int, int]:
    """(width, context length) of ``backbone``'s text tower, read from its config without building it."""
    text = _open_clip_config(backbone)["text_cfg"]
    return int(text["width"]), int(text.get("context_length", 77))


def _create_open_clip(cfg: ModelConfig) -> nn.Module:
    import open_clip

    _open_clip_config(cfg.backbone)
    check_normalisation(cfg)
    kwargs = dict(force_image_size=cfg.image_size) if cfg.pos_embed_interpolation == "bicubic" else {}
    if cfg.pretrained is None:
        # A fixed seed, without disturbing the caller's RNG, makes random weights reproducible.
        with torch.random.fork_rng(devices=[]), _quiet_open_clip():
            torch.manual_seed(cfg.backbone_seed)
            return open_clip.create_model(cfg.backbone, pretrained=None, **kwargs)
    pretrained = cfg.pretrained
    is_file = Path(pretrained).expanduser().is_file()
    if not is_file and open_clip.get_pretrained_cfg(cfg.backbone, pretrained) == {}:
        raise WMoEError(_missing_weights(cfg, f"{pretrained!r} is neither a weights file nor a known open_clip tag"))
    try:
        with _quiet_open_clip():
            return open_clip.create_model(
                cfg.backbone,
                pretrained=str(Path(pretrained).expanduser()) if is_file else pretrained,
                cache_dir=os.environ.get(CACHE_ENV) or None,
                **kwargs,
            )
    except Exception as exc:  # open_clip raises RuntimeError, OSError or hub errors when offline
        raise WMoEError(_missing_weights(cfg, f"loading failed ({type(exc).__name__}: {exc})")) from exc


@torch.no_grad()
def resize_visual_grid(visual: nn.Module, image_size: int, mode: str) -> None:
    """Resize ``visual``'s positional grid to ``image_size`` with ``F.interpolate`` (``align_corners=False``,
    no antialias); the class token's position is kept. AnomalyCLIP does this with ``bilinear`` (on its
    first forward, in place); here it happens once, at load."""
    patch = visual.conv1.kernel_size[0]
    grid = image_size // patch
    pos = visual.positional_embedding
    old = round((pos.shape[0] - 1) ** 0.5)
    if old == grid:
        return
    cls, img = pos[:1], pos[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=(grid, grid), mode=mode, align_corners=False, antialias=False)
    visual.positional_embedding = nn.Parameter(torch.cat([cls, img.permute(0, 2, 3, 1).reshape(grid * grid, -1)]),
                                               requires_grad=pos.requires_grad)
    visual.image_size = (image_size, image_size)
    visual.grid_size = (grid, grid)


def _missing_weights(cfg: ModelConfig, why: str) -> str:
    return (
        f"cannot load the {cfg.backbone} weights (model.pretrained = {cfg.pretrained!r}): {why}. "
        f"Run `wmoe-clip download-weights --dest DIR` on a machine with internet access and set "
        f"model.pretrained to the file it writes (or set {CACHE_ENV} to an open_clip cache holding them)."
    )


class _quiet_open_clip:
    """Silence open_clip's 'initialized randomly' warning, which is intended here."""

    def __enter__(self):
        self._logger = logging.getLogger()
        self._level = self._logger.level
        self._logger.setLevel(max(self._level, logging.ERROR))

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = t.shape
    return t.view(b, n, heads, d // heads).transpose(1, 2)


def _attend(attn: nn.MultiheadAttention, q, k, v, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        mask = mask.to(q.dtype)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    b, h, n, hd = o.shape
    return attn.out_proj(o.transpose(1, 2).reshape(b, n, h * hd))


def autocast_disabled(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off on ``device``, so that everything inside runs in the tensors' own dtype."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _block(blk: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None, vv: torch.Tensor | None = None):
    """One open_clip ResidualAttentionBlock (batch first); with ``vv`` also the value–value stream.

    Returns ``x`` or, when ``vv`` is given, ``(x, vv)`` where ``vv`` gained value–value attention of
    this block's values and no MLP (CLIP Surgery's dual path).
    """
    attn = blk.attn
    heads = attn.num_heads
    q, k, v = F.linear(blk.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (_split_heads(t, heads) for t in (q, k, v))
    out = x + blk.ls_1(_attend(attn, q, k, v, mask))
    out = out + blk.ls_2(blk.mlp(blk.ln_2(out)))
    if vv is None:
        return out
    return out, vv + blk.ls_1(_attend(attn, v, v, v, mask))


class FrozenCLIP(nn.Module):
    """Frozen open_clip CLIP (ViT image tower, causal text tower); always in eval mode, no gradients."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        clip = create_clip(cfg)
        visual = clip.visual
        if not hasattr(clip, "token_embedding") or not hasattr(visual, "transformer"):
            raise WMoEError(f"backbone {cfg.backbone!r} is not a ViT CLIP with an open_clip text tower")
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise WMoEError(f"backbone {cfg.backbone!r}: only class-token pooling is supported")
        self.clip = clip
        self.configuration = backbone_configuration(cfg)
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.clip.eval()

        depth = len(visual.transformer.resblocks)
        layers = tuple(cfg.feature_layers)
        if max(layers) > depth:
            raise WMoEError(f"model.feature_layers {list(layers)} exceed the {depth} layers of {cfg.backbone}")
        self.feature_layers = layers
        self.vv_start = (cfg.vv_start_layer or min(layers)) if cfg.vv_attention else None
        if self.vv_start is not None and self.vv_start > depth:
            raise WMoEError(f"model.vv_start_layer {self.vv_start} exceeds the {depth} layers of {cfg.backbone}")
        self.grid = tuple(visual.grid_size)
        self.image_size = cfg.image_size
        self.global_ln_post = cfg.global_token_ln_post
        self.precision = cfg.precision
        self.embed_dim = int(clip.text_projection.shape[-1]) if isinstance(clip.text_projection, torch.Tensor) \
            else clip.text_projection.out_features
        self.text_width = clip.token_embedding.embedding_dim
        self.context_length = clip.positional_embedding.shape[0]

    def train(self, mode: bool = True) -> "FrozenCLIP":
        # Frozen means frozen: no dropout or other train-time behaviour, whatever the parent does.
        return super().train(False)

    @property
    def dtype(self) -> torch.dtype:
        return self.clip.visual.conv1.weight.dtype

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The encoders' precision on ``device``: autocast to ``model.precision``, or autocast off for fp32."""
        if device.type not in ("cuda", "cpu"):
            return contextlib.nullcontext()
        dtype = AUTOCAST_DTYPES[self.precision]
        if dtype is None:
            return autocast_disabled(device)
        return torch.autocast(device_type=device.type, dtype=dtype)

    def _project(self, tokens: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        return visual.ln_post(tokens) @ visual.proj

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``images`` (B,3,S,S) → global token (B,D), projected patch tokens of the feature layers
        (B,L,N,D) and the last block's plain patch tokens (B,N,D), in the encoder's precision."""
        size = tuple(images.shape[-2:])
        if size != tuple(self.clip.visual.image_size):
            raise WMoEError(f"images are {size[0]}×{size[1]} but the model expects {self.image_size} (model.image_size)")
        with self.autocast(images.device):
            return self._encode_image(images)

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """The visual transformer's input tokens (B,1+N,W): the class token, then the N patch embeddings
        in row-major grid order, each with its positional embedding added (before ``ln_pre``)."""
        visual = self.clip.visual
        x = visual.conv1(images.to(self.dtype)).flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)

    def _global(self, x: torch.Tensor) -> torch.Tensor:
        return self._project(x[:, 0]) if self.global_ln_post else x[:, 0] @ self.clip.visual.proj

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The global token (B,D) of the visual transformer run on ``tokens`` (B,n,W), any subset of
        :meth:`embed_image`'s tokens with the class token first: each sequence attends only within
        itself (batch first), so B windows of one image give B different embeddings."""
        with self.autocast(tokens.device):
            x = self.clip.visual.ln_pre(tokens.to(self.dtype))
            for blk in self.clip.visual.transformer.resblocks:
                x = _block(blk, x)
            return self._global(x)

    def _encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        visual = self.clip.visual
        x = visual.ln_pre(self.embed_image(images))
        vv = None
        patches = []
        for index, blk in enumerate(visual.transformer.resblocks, start=1):
            if index == self.vv_start:
                vv = x
            if vv is None:
                x = _block(blk, x)
            else:
                x, vv = _block(blk, x, vv=vv)
            if index in self.feature_layers:
                patches.append(self._project((x if vv is None else vv)[:, 1:]))
        global_token = self._global(x)
        # The original stream's last block, which runs anyway for the global token: CLIP's own patch tokens.
        return global_token, torch.stack(patches, dim=1), self._project(x[:, 1:])

    def embed_tokens(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.clip.token_embedding(token_ids)

    def encode_text(self, embeddings: torch.Tensor, eot_index: torch.Tensor, truncate: bool = True,
                    deep_tokens: Mapping[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Text features (P,D), unnormalised, from token embeddings (P,T,W) and EOT positions (P,).

        With ``truncate`` the sequences are cut right after the batch's last EOT token; the causal mask
        makes this exact. ``deep_tokens`` maps a text block index (0-based) to tokens (n,W) shared by
        all P sequences, or (P,n,W), that replace positions 1..n (right after the start token) of the
        block's input; no positional embedding is added to them. Positions 1..n must lie before every EOT.
        """
        with self.autocast(embeddings.device):
            return self._encode_text(embeddings, eot_index, truncate, deep_tokens or {})

    def _encode_text(self, embeddings, eot_index, truncate, deep_tokens: Mapping[int, torch.Tensor]) -> torch.Tensor:
        clip = self.clip
        blocks = clip.transformer.resblocks
        bad = [i for i in deep_tokens if not 0 <= i < len(blocks)]
        if bad:
            raise ValueError(f"deep tokens for text blocks {bad}: the text encoder has blocks 0..{len(blocks) - 1}")
        if deep_tokens and max(t.shape[-2] for t in deep_tokens.values()) >= int(eot_index.min()):
            raise ValueError("deep tokens would replace an EOT token")
        if truncate:
            embeddings = embeddings[:, : int(eot_index.max()) + 1]
        n = embeddings.shape[1]
        x = embeddings + clip.positional_embedding[:n].to(embeddings.dtype)
        mask = clip.attn_mask[:n, :n] if clip.attn_mask is not None else None
        for index, blk in enumerate(blocks):
            if index in deep_tokens:
                tokens = deep_tokens[index].to(x.dtype)
                x = torch.cat([x[:, :1], tokens.expand(x.shape[0], -1, -1), x[:, 1 + tokens.shape[-2]:]], dim=1)
            x = _block(blk, x, mask)
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]
        proj = clip.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj
