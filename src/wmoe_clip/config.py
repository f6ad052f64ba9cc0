"""Run configuration: dataclasses in code, YAML on disk, strict validation in between.

A run config names its ``method`` (a key of ``wmoe_clip.model.registry``: ``wmoe_clip``, ``anomalyclip``,
``clip``) and has four sections (``model``, ``train``, ``eval``, ``data``). ``model`` holds the keys every
method shares (the frozen backbone and how it runs) and the method's own settings under
``model.<method>``: the ``Settings`` dataclass of the method's folder (``model/<method>/settings.py``),
loss weights included. Every field has the default of ``docs/REPRODUCTION.md``; a YAML file overrides
any subset. Unknown keys, values of the wrong type, another method's section and keys that moved into a
method's section are errors that name the file and the key, so a typo never silently falls back to a
default. A method's variants (WMoE-CLIP's Table 2 rows) are named overrides of its settings.
"""

from __future__ import annotations

import copy
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
from .model import registry

DEFAULT_METHOD = "wmoe_clip"


class ConfigError(WMoEError, ValueError):
    """A run config that does not validate; the message names the file and the key."""


# What ``model.compat`` sets: the backbone options that restore another code base's numerics.
COMPAT_PRESETS: dict[str, dict[str, Any]] = {
    "anomalyclip": {"global_token_ln_post": False, "pos_embed_interpolation": "bilinear", "precision": "fp32"},
}
POS_EMBED_INTERPOLATIONS = ("bicubic", "bilinear")
PRECISIONS = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class SharedModelConfig:
    """The keys of ``model`` that every method shares: the frozen backbone and how it runs."""

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


# ``model``: the shared keys, and one section per registered method (its ``settings.Settings``), of
# which a run config holds its own method's alone (the others are None and absent from its YAML).
ModelConfig = dataclasses.make_dataclass(
    "ModelConfig",
    [(name, spec.Settings | None, field(default=None)) for name, spec in registry.METHODS.items()],
    bases=(SharedModelConfig,),
    frozen=True,
    namespace={"__module__": __name__},
)


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
    # "bilinear" (then > 0.5, convention A of docs/DATASETS.md §4.2) or "nearest" (convention B).
    mask_interpolation: str = "bilinear"


@dataclass(frozen=True)
class RunConfig:
    # The method (wmoe_clip.model.registry) that reads this config; configs without the key are WMoE-CLIP's.
    method: str = DEFAULT_METHOD
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.method not in registry.METHODS:
            raise ConfigError(f"method must be one of {', '.join(registry.METHODS)}, got {self.method!r}")
        other = next((name for name in registry.METHODS
                      if name != self.method and getattr(self.model, name) is not None), None)
        if other is not None:
            raise ConfigError(f"model.{other} is the section of method {other}, but this config's method is "
                              f"{self.method}; drop the section or set method: {other}")
        if self.settings is None:  # the method's default settings
            model = dataclasses.replace(self.model, **{self.method: registry.get(self.method).Settings()})
            object.__setattr__(self, "model", model)

    @property
    def settings(self) -> Any:
        """The method's own settings, ``model.<method>``."""
        return getattr(self.model, self.method)

    def to_dict(self) -> dict[str, Any]:
        data = _to_plain(self)
        data["model"] = {k: v for k, v in data["model"].items() if not (k in registry.METHODS and v is None)}
        return data

    def for_method(self, method: str) -> "RunConfig":
        """This config's shared settings (backbone, train, eval, data) with ``method`` and its default settings."""
        model = dataclasses.replace(self.model, **{name: None for name in registry.METHODS})
        return RunConfig(method=method, model=model, train=self.train, eval=self.eval, data=self.data)

    def with_variant(self, variant: str) -> "RunConfig":
        """This config with the settings of one of its method's variants (WMoE-CLIP's Table 2 rows)."""
        variants = registry.get(self.method).variants
        if variant not in variants:
            have = f"choose one of {', '.join(variants)}" if variants else "it has none"
            raise ConfigError(f"unknown variant {variant!r} of method {self.method}; {have}")
        data = self.to_dict()
        data["model"][self.method] = _merge(data["model"][self.method], variants[variant])
        return config_from_dict(data, f"variant {variant}")

    @property
    def variant(self) -> str | None:
        """The first of its method's variants whose settings this config has, "custom" for none of them,
        None for a method without variants."""
        variants = registry.get(self.method).variants
        if not variants:
            return None
        settings = _to_plain(self.settings)
        return next((name for name, sets in variants.items() if _holds(settings, sets)), "custom")


def _holds(data: Mapping[str, Any], sets: Mapping[str, Any]) -> bool:
    """Whether every (nested) key of ``sets`` has its value in ``data``."""
    return all(_holds(data.get(k) or {}, v) if isinstance(v, Mapping) else data.get(k) == v for k, v in sets.items())


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
    """Validate a (partial) config mapping over the defaults of its method."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    method = data.get("method", DEFAULT_METHOD)
    if not isinstance(method, str) or method not in registry.METHODS:
        raise ConfigError(f"{source}: method must be one of {', '.join(registry.METHODS)}, got {method!r}")
    moved = _moved_keys(data, method)
    if moved:
        raise ConfigError(f"{source}: {'; '.join(moved)}")
    try:
        cfg = _build(RunConfig, _merge(RunConfig(method=method).to_dict(), _with_compat(data)), "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _check_values(cfg, source)
    return cfg


def _lookup(data: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """(found, value) of a dotted key in nested mappings."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _legacy_key_owner(old: str, method: str) -> str | None:
    """The method whose section an old run config key moved to: the config's own method if it has the key,
    else the first that has it; None for a key that never moved."""
    owners = [name for name, spec in registry.METHODS.items() if old in spec.legacy_keys]
    return method if method in owners else next(iter(owners), None)


def _all_legacy_keys() -> list[str]:
    return list(dict.fromkeys(key for spec in registry.METHODS.values() for key in spec.legacy_keys))


def _moved_keys(data: Mapping[str, Any], method: str) -> list[str]:
    """One message per key of ``data`` that sits where a method's settings were before each method owned its
    section, naming where it is now."""
    out = []
    for old in _all_legacy_keys():
        if _lookup(data, old)[0]:
            owner = _legacy_key_owner(old, method)
            out.append(f"{old} moved to model.{owner}.{registry.get(owner).legacy_keys[old]}")
    return out


def migrate_legacy_keys(data: dict[str, Any]) -> dict[str, Any]:
    """A config mapping written before each method owned its section (checkpoint formats 1 to 3), in
    today's layout: the keys of its method move into ``model.<method>``; the keys and sections of other
    methods, which its method never read (older code wrote every method's defaults), are dropped."""
    data = copy.deepcopy(data)
    method = data.get("method", DEFAULT_METHOD)
    model = data.setdefault("model", {})
    section = model.setdefault(method, {})
    for old in _all_legacy_keys():
        found, value = _lookup(data, old)
        if not found:
            continue
        *parents, leaf = old.split(".")
        parent = data
        for part in parents:
            parent = parent[part]
        del parent[leaf]
        if _legacy_key_owner(old, method) == method:
            section[registry.get(method).legacy_keys[old]] = value
    for name in registry.METHODS:
        if name != method:
            model.pop(name, None)
    return data


def _with_compat(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the options of ``model.compat`` filled in where the mapping does not set them."""
    model = data.get("model")
    if not isinstance(model, dict) or model.get("compat") not in COMPAT_PRESETS:
        return data  # no compat, or an unknown name that _check_values reports
    preset = COMPAT_PRESETS[model["compat"]]
    return {**data, "model": {**preset, **model}}


def _check_values(cfg: RunConfig, source: str) -> None:
    """The generic checks, then those of the config's method (its ``settings.problems``)."""
    m, t = cfg.model, cfg.train
    problems = []
    if m.image_size < 1:
        problems.append("model.image_size must be positive")
    if not m.feature_layers or min(m.feature_layers) < 1:
        problems.append("model.feature_layers must list layer numbers starting at 1")
    if m.vv_start_layer is not None and m.vv_start_layer < 1:
        problems.append("model.vv_start_layer must be at least 1")
    if m.pos_embed_interpolation not in POS_EMBED_INTERPOLATIONS:
        problems.append(f"model.pos_embed_interpolation must be one of {', '.join(POS_EMBED_INTERPOLATIONS)}")
    if m.compat is not None:
        if m.compat not in COMPAT_PRESETS:
            problems.append(f"model.compat must be null or one of {', '.join(COMPAT_PRESETS)}")
        else:
            problems.extend(
                f"model.compat {m.compat} sets model.{key} to {value!r}, but it is {getattr(m, key)!r}; "
                f"drop one of the two, or set model.compat: null to switch the {m.compat} preset off"
                for key, value in COMPAT_PRESETS[m.compat].items() if getattr(m, key) != value)
    if m.precision not in PRECISIONS:
        problems.append(f"model.precision must be one of {', '.join(PRECISIONS)}, got {m.precision!r}")
    if t.micro_batch_size is not None and not 1 <= t.micro_batch_size <= t.batch_size:
        problems.append("train.micro_batch_size must lie in [1, train.batch_size]")
    if not 0.0 <= t.feature_cache_memory <= 1.0:
        problems.append("train.feature_cache_memory must lie in [0, 1]")
    if cfg.data.mask_interpolation not in ("bilinear", "nearest"):
        problems.append("data.mask_interpolation must be 'bilinear' or 'nearest'")
    if cfg.eval.undefined_metric not in ("omit", "zero"):
        problems.append(f"eval.undefined_metric must be one of omit, zero, got {cfg.eval.undefined_metric!r}")
    problems += registry.get(cfg.method).problems(cfg)
    problems += _range_problems(cfg)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


# Devices select_device can open: the first visible GPU (auto), the CPU, or a CUDA index.
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _range_problems(cfg: RunConfig) -> list[str]:
    """The ranges of the shared numeric settings: a value outside them would crash late or train nothing."""
    m, t, e = cfg.model, cfg.train, cfg.eval
    problems = [f"{name} must be a finite number, got {value!r}"
                for name, value in _numbers(cfg.to_dict()) if not math.isfinite(value)]
    at_least = {
        "train.epochs": (t.epochs, 1), "train.batch_size": (t.batch_size, 1), "train.num_workers": (t.num_workers, 0),
        "train.seed": (t.seed, 0), "eval.batch_size": (e.batch_size, 1), "eval.num_workers": (e.num_workers, 0),
        "eval.sigma": (e.sigma, 0), "eval.figure_samples": (e.figure_samples, 0),
        "model.backbone_seed": (m.backbone_seed, 0),
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
    ``overrides:`` (checked when Snakemake builds its DAG, before any job runs) both come here. Setting
    ``method`` to another method keeps the base's shared settings and gives the new method its default
    settings; keys of another method's section (``model.<other>.…``) do not concern the config's method
    and are left out, so that one set of overrides serves every method of a protocol.
    """
    load_config(base)  # the base alone must be valid; its errors name its own file
    # The base as written, not resolved: model.compat fills its options only after the overrides, so an
    # override of model.compat (null switches the preset off) or of one of its options is what counts.
    data = _read_yaml(resolve_config_path(base)) or {}
    base_method = data.get("method", DEFAULT_METHOD)
    method = overrides.get("method", base_method)
    if method != base_method:
        if not isinstance(method, str) or method not in registry.METHODS:
            raise ConfigError(f"{source}: method must be one of {', '.join(registry.METHODS)}, got {method!r}")
        # The base's shared settings with the new method's defaults: its own method's section goes.
        data["method"] = method
        if isinstance(data.get("model"), dict):
            data["model"].pop(base_method, None)
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        if parents[:1] == ["model"] and len(parents) > 1 and parents[1] in registry.METHODS and parents[1] != method:
            continue
        node = data
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {key}: {part} is a value, not a section")
            node = child
        node[leaf] = value
    return config_from_dict(data, source)


def shipped_configs() -> dict[str, Path]:
    """The run configs shipped in the methods' folders (``model/<method>/configs/NAME.yaml``), by NAME."""
    found: dict[str, Path] = {}
    for spec in registry.METHODS.values():
        for path in sorted(spec.configs_dir.glob("*.yaml")):
            if path.stem in found:
                raise ConfigError(f"shipped config name {path.stem!r} is used twice: {found[path.stem]} and {path}; "
                                  "rename one of them")
            found[path.stem] = path
    return found


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A file path, or the name of a run config shipped in a method's folder (``tiny``, ``vit_l14_336``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    shipped = shipped_configs()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise ConfigError(f"config {str(name_or_path)!r} is neither an existing YAML file nor a shipped config "
                      f"({', '.join(sorted(shipped))})")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_config(name_or_path: str | Path | None = None, variant: str | None = None) -> RunConfig:
    """Load a run config (defaults when None), optionally applying a variant of its method."""
    if name_or_path is None:
        cfg = RunConfig()
    else:
        path = resolve_config_path(name_or_path)
        cfg = config_from_dict(_read_yaml(path), str(path))
    return cfg.with_variant(variant) if variant else cfg
