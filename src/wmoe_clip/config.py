"""Run configuration: dataclasses in code, YAML on disk, strict validation in between.

A run config names its ``method`` (a key of ``wmoe_clip.model.registry``: ``wmoe_clip``, ``anomalyclip``,
``clip``) and has five sections (``model``, ``loss``, ``train``, ``eval``, ``data``); a method's own
settings sit under ``model.<method>``. Every field has the default of ``docs/REPRODUCTION.md``; a YAML
file overrides any subset. Unknown keys and values of the wrong type are errors that name the file and
the key, so a typo never silently falls back to a default. The Table 2 variants of WMoE-CLIP are named
switch sets applied on top of a config.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import WMoEError

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(WMoEError, ValueError):
    """A run config that does not validate; the message names the file and the key."""


@dataclass(frozen=True)
class CTDSConfig:
    enabled: bool = True
    latent_dim: int = 256
    decoder_hidden: int = 512
    # Draw z ~ N(mu, sigma) at evaluation too; false uses z = mu so that scores are deterministic.
    sample_at_eval: bool = False
    # How P(z) shifts the prompt slots: "shared" (one vector added to every slot of both prompts) or
    # "per_slot" (a different vector for each slot of each prompt); the paper does not fix it.
    shift: str = "shared"


@dataclass(frozen=True)
class WCMAConfig:
    enabled: bool = True
    reduction: int = 4
    attn_dim: int = 256
    heads: int = 1
    # T~ = T + attention (true) or T~ = attention alone (false).
    residual: bool = True
    # One WCMA module per feature layer (true) or one shared by all layers (false).
    per_layer: bool = True
    # Border handling of the Haar DWT (pytorch_wavelets mode); "zero" was the behaviour before it was a choice.
    dwt_mode: str = "symmetric"


@dataclass(frozen=True)
class SAMoEConfig:
    enabled: bool = True
    adapter_dim: int = 256
    num_experts: int = 8
    top_k: int = 2
    expert_hidden: int = 512
    load_balance_weight: float = 0.0


@dataclass(frozen=True)
class AnomalyCLIPConfig:
    """The learnable prompts of the ``anomalyclip`` method (their ``n_ctx``, ``depth``, ``t_n_ctx``)."""

    # Learnable context vectors per state, placed right after the start token.
    prompt_length: int = 12
    # Words after the context vectors: "[V1..V12] object." and "[V1..V12] damaged object.".
    normal_suffix: str = "object."
    abnormal_suffix: str = "damaged object."
    # Deep text tokens replace token positions 1..deep_prompt_length before text blocks
    # 1..deep_prompt_depth-1 (0-based), one learnable set per block, shared by both prompts.
    deep_prompt_depth: int = 9
    deep_prompt_length: int = 4
    # λ of the loss CE + λ·Σ_layers (focal + dice + dice); the method ignores the loss section.
    local_weight: float = 4.0
    # The feature layers its maps use, a subset of model.feature_layers (null: all of them), so that
    # it can share one backbone configuration with the other methods of a protocol.
    layers: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ClipConfig:
    """The training-free ``clip`` baseline: class-name prompts on CLIP's plain last-block tokens."""

    # "{cls}" is replaced by the class name with "_" as a space.
    normal_template: str = "a photo of a normal {cls}"
    abnormal_template: str = "a photo of an anomalous {cls}"
    # τ of softmax(cos/τ); null: CLIP's own learned scale, 1 / logit_scale.exp() (1/100 for OpenAI's).
    temperature: float | None = None


# What ``model.compat`` sets: the backbone options that restore another code base's numerics.
COMPAT_PRESETS: dict[str, dict[str, Any]] = {
    "anomalyclip": {"global_token_ln_post": False, "pos_embed_interpolation": "bilinear", "precision": "fp32"},
}
POS_EMBED_INTERPOLATIONS = ("bicubic", "bilinear")
CTDS_SHIFTS = ("shared", "per_slot")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "ViT-L-14-336-quickgelu"
    # open_clip pretrained tag ("openai"), a path to a weights file, or null for random weights.
    pretrained: str | None = "openai"
    # Seed of the frozen backbone's initialisation when pretrained is null, so that a checkpoint of
    # learnable state alone rebuilds the same model.
    backbone_seed: int = 0
    image_size: int = 518
    feature_layers: tuple[int, ...] = (6, 12, 18, 24)
    vv_attention: bool = True
    # First layer (1-based) of the value-value path; null = the first feature layer.
    vv_start_layer: int | None = None
    # Cut every text batch right after its last EOT token (exact for a causal encoder, much cheaper).
    truncate_text: bool = True
    prompt_length: int = 2
    prompt_normal: str = "a photo of a good"
    prompt_abnormal: str = "a photo of a damaged"
    temperature: float = 0.07
    alpha: float = 0.5
    # The global token is ``ln_post(class token) @ proj`` (CLIP's), or ``class token @ proj`` (false,
    # AnomalyCLIP's image score).
    global_token_ln_post: bool = True
    # How the 24×24 positional grid of ViT-L-14-336 becomes 37×37 at 518 px, once at load: "bicubic"
    # (open_clip's loader, antialiased) or "bilinear" (AnomalyCLIP: align_corners=False, no antialias).
    pos_embed_interpolation: str = "bicubic"
    # Precision of the frozen image and text encoders on every device (autocast; "fp32" switches the
    # caller's autocast off, as AnomalyCLIP's fp32 model); learnable modules, maps and losses always
    # run in float32.
    precision: str = "bf16"
    # A name of COMPAT_PRESETS: sets the backbone options above to that code base's values.
    compat: str | None = None
    # "zero_residual": the last layer of every residual branch (WCMA's output projection, each expert's
    # output layer, CTDS's prompt map P) starts at zero, so every variant starts as CLIP; "default":
    # PyTorch's initialisation everywhere.
    init: str = "zero_residual"
    anomalyclip: AnomalyCLIPConfig = field(default_factory=AnomalyCLIPConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    ctds: CTDSConfig = field(default_factory=CTDSConfig)
    wcma: WCMAConfig = field(default_factory=WCMAConfig)
    sa_moe: SAMoEConfig = field(default_factory=SAMoEConfig)


@dataclass(frozen=True)
class LossConfig:
    focal_gamma: float = 2.0
    global_weight: float = 1.0
    local_weight: float = 1.0
    kl_weight: float = 0.001
    rec_weight: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    # Micro-batch for gradient accumulation when a full batch does not fit; null = the whole batch.
    micro_batch_size: int | None = None
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 0
    num_workers: int = 2
    device: str = "auto"
    feature_cache: bool = False
    # A built cache is held in device memory when it fits in this fraction of the free GPU memory
    # (of the available RAM on CPU); otherwise it is memory-mapped. 0 = always memory-mapped.
    feature_cache_memory: float = 0.5


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 32
    sigma: float = 4.0
    num_workers: int = 2
    device: str = "auto"
    figure_samples: int = 8
    # A class where a metric is undefined (one label only): "omit" leaves it out of the mean (AnomalyCLIP
    # lineage; the mean says over how many classes), "zero" counts it as 0 (AdaCLIP, AA-CLIP).
    undefined_metric: str = "omit"


@dataclass(frozen=True)
class DataConfig:
    # "bilinear" (then > 0.5, convention A of DATASETS.md) or "nearest" (convention B).
    mask_interpolation: str = "bilinear"


@dataclass(frozen=True)
class RunConfig:
    # The method (wmoe_clip.model.registry) that reads this config; configs without the key are WMoE-CLIP's.
    method: str = "wmoe_clip"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def with_variant(self, variant: str) -> "RunConfig":
        """This config with the three module switches of a Table 2 variant (WMoE-CLIP's)."""
        ctds, wcma, sa_moe = variant_switches(variant)
        m = self.model
        model = dataclasses.replace(
            m,
            ctds=dataclasses.replace(m.ctds, enabled=ctds),
            wcma=dataclasses.replace(m.wcma, enabled=wcma),
            sa_moe=dataclasses.replace(m.sa_moe, enabled=sa_moe),
        )
        return dataclasses.replace(self, model=model)

    @property
    def variant(self) -> str:
        key = (self.model.ctds.enabled, self.model.wcma.enabled, self.model.sa_moe.enabled)
        for name, switches in VARIANTS.items():
            if switches == key:
                return name
        return "custom"


INIT_SCHEMES = ("zero_residual", "default")
PRECISIONS = ("bf16", "fp16", "fp32")
# pytorch_wavelets' border modes; on an odd grid they differ only in the last row and column of the bands.
DWT_MODES = ("zero", "symmetric", "reflect", "periodic", "periodization")

# The rows of the paper's Table 2: (CTDS, WCMA, SA-MoE).
VARIANTS: dict[str, tuple[bool, bool, bool]] = {
    "base": (False, False, False),
    "ctds": (True, False, False),
    "ctds_wcma": (True, True, False),
    "ctds_samoe": (True, False, True),
    "full": (True, True, True),
}


def variant_switches(variant: str) -> tuple[bool, bool, bool]:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}") from None


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: null is not allowed")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {where}")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Validate a (partial) config mapping over the defaults."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        cfg = _build(RunConfig, _merge(RunConfig().to_dict(), _with_compat(data)), "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _check_values(cfg, source)
    return cfg


def _with_compat(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the options of ``model.compat`` filled in where the mapping does not set them."""
    model = data.get("model")
    if not isinstance(model, dict) or model.get("compat") not in COMPAT_PRESETS:
        return data  # no compat, or an unknown name that _check_values reports
    preset = COMPAT_PRESETS[model["compat"]]
    return {**data, "model": {**preset, **model}}


def _check_values(cfg: RunConfig, source: str) -> None:
    from .model.registry import method_names

    m, t = cfg.model, cfg.train
    problems = []
    if cfg.method not in method_names():
        problems.append(f"method must be one of {', '.join(method_names())}, got {cfg.method!r}")
    if m.image_size < 1:
        problems.append("model.image_size must be positive")
    if not m.feature_layers or min(m.feature_layers) < 1:
        problems.append("model.feature_layers must list layer numbers starting at 1")
    if not 0.0 <= m.alpha <= 1.0:
        problems.append("model.alpha must lie in [0, 1]")
    if not 1 <= m.sa_moe.top_k <= m.sa_moe.num_experts:
        problems.append("model.sa_moe.top_k must lie in [1, num_experts]")
    if m.vv_start_layer is not None and m.vv_start_layer < 1:
        problems.append("model.vv_start_layer must be at least 1")
    if m.wcma.heads < 1 or m.wcma.attn_dim % m.wcma.heads:
        problems.append("model.wcma.heads must be positive and divide model.wcma.attn_dim")
    if m.temperature <= 0:
        problems.append("model.temperature must be positive")
    if m.prompt_length < 1:
        problems.append("model.prompt_length must be at least 1")
    a = m.anomalyclip
    if a.local_weight < 0:
        problems.append("model.anomalyclip.local_weight must not be negative")
    if a.prompt_length < 1 or a.deep_prompt_depth < 1 or a.deep_prompt_length < 0:
        problems.append("model.anomalyclip: prompt_length and deep_prompt_depth must be at least 1, "
                        "deep_prompt_length at least 0")
    elif a.deep_prompt_depth > 1 and not 1 <= a.deep_prompt_length <= a.prompt_length:
        problems.append("model.anomalyclip.deep_prompt_length must lie in [1, prompt_length]: the deep "
                        "tokens replace context slots")
    if a.layers is not None and (not a.layers or not set(a.layers) <= set(m.feature_layers)):
        problems.append(f"model.anomalyclip.layers {list(a.layers)} must be a non-empty subset of "
                        f"model.feature_layers {list(m.feature_layers)}")
    c = m.clip
    for key, template in (("normal_template", c.normal_template), ("abnormal_template", c.abnormal_template)):
        if template.count("{cls}") != 1 or "{" in template.replace("{cls}", ""):
            problems.append(f"model.clip.{key} must hold the placeholder {{cls}} once and no other braces, "
                            f"got {template!r}")
    if c.temperature is not None and not c.temperature > 0:
        problems.append("model.clip.temperature must be positive or null")
    if m.pos_embed_interpolation not in POS_EMBED_INTERPOLATIONS:
        problems.append(f"model.pos_embed_interpolation must be one of {', '.join(POS_EMBED_INTERPOLATIONS)}")
    if m.compat is not None:
        if m.compat not in COMPAT_PRESETS:
            problems.append(f"model.compat must be null or one of {', '.join(COMPAT_PRESETS)}")
        else:
            problems.extend(
                f"model.compat {m.compat} sets model.{key} to {value!r}, but it is {getattr(m, key)!r}; "
                f"drop one of the two, or set model.compat: null to switch the {m.compat} preset off" for key, value in COMPAT_PRESETS[m.compat].items() if getattr(m, key) != value)
    if t.micro_batch_size is not None and not 1 <= t.micro_batch_size <= t.batch_size:
        problems.append("train.micro_batch_size must lie in [1, train.batch_size]")
    if not 0.0 <= t.feature_cache_memory <= 1.0:
        problems.append("train.feature_cache_memory must lie in [0, 1]")
    if cfg.data.mask_interpolation not in ("bilinear", "nearest"):
        problems.append("data.mask_interpolation must be 'bilinear' or 'nearest'")
    for key, value, allowed in (("model.init", m.init, INIT_SCHEMES), ("model.precision", m.precision, PRECISIONS),
                                ("model.ctds.shift", m.ctds.shift, CTDS_SHIFTS),
                                ("eval.undefined_metric", cfg.eval.undefined_metric, ("omit", "zero")),
                                ("model.wcma.dwt_mode", m.wcma.dwt_mode, DWT_MODES)):
        if value not in allowed:
            problems.append(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    if m.init == "zero_residual" and not m.wcma.residual:
        problems.append("model.init zero_residual needs model.wcma.residual true (a non-residual WCMA cannot "
                        "start at the identity); set model.init: default")
    problems += _range_problems(cfg)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


# Devices select_device can open: the first visible GPU (auto), the CPU, or a CUDA index.
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _range_problems(cfg: RunConfig) -> list[str]:
    """The ranges of the numeric settings: a value outside them would crash late or train nothing."""
    m, t, e, lo = cfg.model, cfg.train, cfg.eval, cfg.loss
    problems = [f"{name} must be a finite number, got {value!r}"
                for name, value in _numbers(cfg.to_dict()) if not math.isfinite(value)]
    at_least = {
        "train.epochs": (t.epochs, 1), "train.batch_size": (t.batch_size, 1), "train.num_workers": (t.num_workers, 0),
        "train.seed": (t.seed, 0), "eval.batch_size": (e.batch_size, 1), "eval.num_workers": (e.num_workers, 0),
        "eval.sigma": (e.sigma, 0), "eval.figure_samples": (e.figure_samples, 0),
        "loss.focal_gamma": (lo.focal_gamma, 0), "loss.global_weight": (lo.global_weight, 0),
        "loss.local_weight": (lo.local_weight, 0), "loss.kl_weight": (lo.kl_weight, 0),
        "loss.rec_weight": (lo.rec_weight, 0), "model.backbone_seed": (m.backbone_seed, 0),
        "model.ctds.latent_dim": (m.ctds.latent_dim, 1), "model.ctds.decoder_hidden": (m.ctds.decoder_hidden, 1),
        "model.wcma.reduction": (m.wcma.reduction, 1), "model.wcma.attn_dim": (m.wcma.attn_dim, 1),
        "model.sa_moe.adapter_dim": (m.sa_moe.adapter_dim, 1), "model.sa_moe.expert_hidden": (m.sa_moe.expert_hidden, 1),
        "model.sa_moe.load_balance_weight": (m.sa_moe.load_balance_weight, 0),
    }
    problems += [f"{name} must be at least {low}, got {value!r}" for name, (value, low) in at_least.items()
                 if value < low]
    if not t.lr > 0:
        problems.append(f"train.lr must be positive, got {t.lr!r}")
    problems += [f"train.betas[{i}] must lie in [0, 1), got {b!r}" for i, b in enumerate(t.betas) if not 0 <= b < 1]
    problems += [f"{name} must be auto, cpu, mps, cuda or cuda:N, got {dev!r}"
                 for name, dev in (("train.device", t.device), ("eval.device", e.device)) if not _DEVICE.match(dev)]
    return problems


def _numbers(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """(dotted key, value) of every float in a config dict, list items included."""
    out = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _numbers(value, f"{name}.")
        elif isinstance(value, float):
            out.append((name, value))
        elif isinstance(value, list):
            out += [(f"{name}[{i}]", v) for i, v in enumerate(value) if isinstance(v, float)]
    return out


def config_with_overrides(base: str | Path, overrides: Mapping[str, Any], source: str) -> RunConfig:
    """The config ``base`` (shipped name or YAML file) with each dotted ``key: value`` set, validated whole.

    The one place that applies overrides: ``wmoe-clip run-config --set`` and the workflow's
    ``overrides:`` (checked when Snakemake builds its DAG, before any job runs) both come here.
    """
    load_config(base)  # the base alone must be valid; its errors name its own file
    # The base as written, not resolved: model.compat fills its options only after the overrides, so an
    # override of model.compat (null switches the preset off) or of one of its options is what counts.
    data = _read_yaml(resolve_config_path(base)) or {}
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        node = data
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {key}: {part} is a value, not a section")
            node = child
        node[leaf] = value
    return config_from_dict(data, source)


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A file path, or the name of a config shipped with the package (``tiny``, ``vit_l14_336``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config {str(name_or_path)!r} is neither an existing YAML file nor a shipped config ({known})")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_config(name_or_path: str | Path | None = None, variant: str | None = None) -> RunConfig:
    """Load a run config (defaults when None), optionally applying a Table 2 variant."""
    if name_or_path is None:
        cfg = RunConfig()
    else:
        path = resolve_config_path(name_or_path)
        cfg = config_from_dict(_read_yaml(path), str(path))
    return cfg.with_variant(variant) if variant else cfg
