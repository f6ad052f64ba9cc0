"""The protocol of a workflow config: what it trains and evaluates, with which run configs, in which
evaluate jobs, and where every file goes (the results layout).

The workflow config is the validated dict of ``workflow/schemas/config.schema.yaml`` (Snakemake's
``config``): its methods and datasets are checked here against the registries, its run configs are
built and validated whole (``config.config_with_overrides``). The Snakemake rules read a :class:`Plan`
while the DAG is built, ``wmoe-clip dvc-params`` writes DVC's protocol lists from one, and the report
reads the results layout's patterns. The module imports no torch.

The results layout is the pattern constants below, each relative to its prefix in the workflow
config's ``paths`` (``resources``, ``results``, ``reports``, ``logs``; :class:`Paths` joins them).
``{run}`` is a run name: the Table 2 variant of a method with variants, the method's own name otherwise
(``model.registry.run_name``); ``{source}`` is ``none`` for a method evaluated without training.

Besides the protocol, every plan holds the released-checkpoint check (:class:`ReleasedCheck`, the
workflow's ``released_check`` target): AnomalyCLIP's two released checkpoints imported and evaluated,
with no training, on every target of the config, each by the checkpoint its own paper's protocol uses
for that target, under the run name ``anomalyclip_released``.
"""

from __future__ import annotations

import copy
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .config import RunConfig, config_with_overrides
from .data import registry as dataset_registry
from .data.weights import RELEASED, RELEASED_DIRNAME, RELEASED_RECORD, WeightsSource
from .data.weights import SOURCES as WEIGHTS_SOURCES
from .engine.tracking import default_tracking_uri
from .errors import WMoEError
from .model import registry as method_registry
from .model.encoder_pass import backbone_digest, encoder_passes

# The source segment of a method evaluated without training: eval/none/{target}/{method}/seed0.json.
UNTRAINED = method_registry.UNTRAINED_SOURCE

# Under paths.resources.
RAW = "raw/{dataset}"
DOWNLOAD_RECORD = f"{RAW}/download.json"
PREPARED = "prepared/{dataset}/meta.json"
PREPARE_REPORT = "prepared/{dataset}/prepare.json"
CUSTOM_RAW = "raw/custom/{custom}"
CUSTOM_PREPARED = "prepared/custom/{custom}/meta.json"
CUSTOM_PREPARE_REPORT = "prepared/custom/{custom}/prepare.json"
# A backbone's downloaded weights: its file name in data/weights.py.
WEIGHTS = "weights/{file}"
# AnomalyCLIP's released checkpoints ({checkpoint}: its path below the repository's checkpoints/, e.g.
# 9_12_4_multiscale/epoch_15.pth) and the record of their download.
RELEASED_CHECKPOINT = f"weights/{RELEASED_DIRNAME}/{{checkpoint}}"
RELEASED_DOWNLOAD_RECORD = f"weights/{RELEASED_DIRNAME}/{RELEASED_RECORD}"
FEATURE_CACHE = "feature-cache"
# Under paths.results.
RUN_CONFIG = "run_config/{method}.yaml"
TRACKING_DONE = "tracking/initialised.json"
TRAIN_DIR = "train/{source}/{run}/seed{seed}"
MODEL = f"{TRAIN_DIR}/model.pt"
HISTORY = f"{TRAIN_DIR}/history.json"
RUN_RECORD = f"{TRAIN_DIR}/run.json"
EVAL_JSON = "eval/{source}/{target}/{run}/seed{seed}.json"
EVAL_FIGURE = "eval/{source}/{target}/{run}/seed{seed}.png"
# A released checkpoint as a wmoe-clip checkpoint (`wmoe-clip import-checkpoint`); no run.json.
IMPORTED_MODEL = "imported/{source}/{run}/model.pt"
# Under paths.reports: the protocol's report, and the released-checkpoint check's in a folder of its own.
REPORT_FILES = ("index.html", "table1.tex", "table2.tex")
RELEASED_REPORT_DIR = "released_check"
# Under paths.logs: one per job.
LOGS = {
    "download": "download/{dataset}.log",
    "synth": "synth/{dataset}.log",
    "synth_custom": "synth/custom/{custom}.log",
    "prepare": "prepare/{dataset}.log",
    "prepare_custom": "prepare/custom/{custom}.log",
    "download_weights": "download_weights/{file}.log",
    "tracking_init": "tracking_init.log",
    "run_config": "run_config/{method}.log",
    "train": "train/{source}/{run}/seed{seed}.log",
    "evaluate": "evaluate/{target}/{backbone}.log",
    "report": "report.log",
    "download_released": "released_check/download.log",
    "import_released": "released_check/import/{source}.log",
    "evaluate_released": "released_check/evaluate/{target}/{backbone}.log",
    "report_released": "released_check/report.log",
}

_FIELD = re.compile(r"\{(\w+)\}")


def glob(pattern: str) -> str:
    """``pattern`` with every ``{field}`` a ``*``: the files of that kind under its prefix."""
    return _FIELD.sub("*", pattern)


def fields(pattern: str, path: str) -> dict[str, str] | None:
    """The ``{field}`` values of ``path`` (relative to the pattern's prefix), or None if it does not match."""
    regex = "".join(f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part)
                    for i, part in enumerate(_FIELD.split(pattern)))
    match = re.fullmatch(regex, path)
    return match.groupdict() if match else None


@dataclass(frozen=True)
class Paths:
    """The prefixes of a workflow config's ``paths``; ``resources(PATTERN)`` etc. join one to a pattern."""

    resources_dir: str
    results_dir: str
    reports_dir: str
    logs_dir: str

    def resources(self, pattern: str) -> str:
        return posixpath.join(self.resources_dir, pattern)

    def results(self, pattern: str) -> str:
        return posixpath.join(self.results_dir, pattern)

    def log(self, job: str) -> str:
        return posixpath.join(self.logs_dir, LOGS[job])

    @property
    def report_files(self) -> list[str]:
        return [posixpath.join(self.reports_dir, name) for name in REPORT_FILES]

    @property
    def released_report_files(self) -> list[str]:
        return [posixpath.join(self.reports_dir, RELEASED_REPORT_DIR, name) for name in REPORT_FILES]


@dataclass(frozen=True)
class Training:
    source: str
    run: str
    seed: int
    method: str

    def path(self, paths: Paths, pattern: str = TRAIN_DIR) -> str:
        return paths.results(pattern).format(source=self.source, run=self.run, seed=self.seed)


@dataclass(frozen=True)
class Evaluation:
    """One model on one target: a training's checkpoint, or for a method that does not train
    (source ``none``, seed 0) its run config, or (``imported``) a released checkpoint imported with
    ``wmoe-clip import-checkpoint``, which records no training: its source and run name are given."""

    source: str
    target: str
    run: str
    seed: int
    method: str
    imported: bool = False

    @property
    def trained(self) -> bool:
        return self.source != UNTRAINED

    def path(self, paths: Paths, pattern: str = EVAL_JSON) -> str:
        return paths.results(pattern).format(source=self.source, target=self.target, run=self.run, seed=self.seed)

    def model_inputs(self, paths: Paths) -> list[str]:
        """Its checkpoint and training record (evaluate reads run.json to link its run to the training's),
        or its method's run config."""
        if not self.trained:
            return [paths.results(RUN_CONFIG).format(method=self.method)]
        if self.imported:
            return [paths.results(IMPORTED_MODEL).format(source=self.source, run=self.run)]
        train = Training(self.source, self.run, self.seed, self.method)
        return [train.path(paths, MODEL), train.path(paths, RUN_RECORD)]

    def model_args(self, paths: Paths) -> list[str]:
        """Its words on the ``wmoe-clip evaluate`` command line: the model, its JSON and its figure."""
        model = self.model_inputs(paths)[0]
        given = ["--source", self.source, "--run", self.run] if self.imported else []
        return ["--checkpoint" if self.trained else "--config", model, *given,
                "--out", self.path(paths), "--figure", self.path(paths, EVAL_FIGURE)]


@dataclass(frozen=True)
class EvaluateJob:
    """The evaluations of one target whose run configs share an encoder pass (``backbone`` is its
    ``backbone_digest``): one ``wmoe-clip evaluate`` scores them all from one pass of the images.
    ``feature_cache``: a training of the same backbone configuration on this target caches its
    features, so the job reads (or builds) that cache instead of encoding the images again."""

    name: str
    target: str
    custom: bool
    backbone: str
    evaluations: tuple[Evaluation, ...]
    feature_cache: bool

    def data(self, paths: Paths) -> str:
        """The prepared manifest of the target."""
        if self.custom:
            return paths.resources(CUSTOM_PREPARED).format(custom=self.target)
        return paths.resources(PREPARED).format(dataset=self.target)

    def inputs(self, paths: Paths) -> list[str]:
        return [path for e in self.evaluations for path in e.model_inputs(paths)]

    def outputs(self, paths: Paths) -> list[str]:
        return [e.path(paths, pattern) for e in self.evaluations for pattern in (EVAL_JSON, EVAL_FIGURE)]

    def options(self, paths: Paths) -> list[str]:
        """Its options besides the target and the models: the feature cache where the target's is shared."""
        cache = ["--feature-cache"] if self.feature_cache else []
        return [*cache, "--cache-dir", paths.resources(FEATURE_CACHE)]

    def model_args(self, paths: Paths) -> list[str]:
        return [word for e in self.evaluations for word in e.model_args(paths)]


# The method whose released checkpoints the check imports, and their run name in the results layout (the
# report labels it as a released checkpoint and holds it against the official logs).
RELEASED_METHOD = "anomalyclip"
RELEASED_RUN = "anomalyclip_released"


@dataclass(frozen=True)
class ReleasedImport:
    """One released checkpoint (``checkpoint``: its path below ``weights/anomalyclip/``), trained on
    ``source``, imported into the results layout."""

    source: str
    checkpoint: str

    def checkpoint_path(self, paths: Paths) -> str:
        return paths.resources(RELEASED_CHECKPOINT).format(checkpoint=self.checkpoint)


@dataclass(frozen=True)
class ReleasedCheck:
    """The released-checkpoint check: the imports, one evaluation per target of the config (the
    checkpoint whose training source the method's own protocol gives the target) and their evaluate
    jobs, grouped by encoder pass as the protocol's are, apart from them (they need no training)."""

    imports: tuple[ReleasedImport, ...]
    evaluations: tuple[Evaluation, ...]
    jobs: dict[str, EvaluateJob]

    def download_record(self, paths: Paths) -> str:
        return paths.resources(RELEASED_DOWNLOAD_RECORD)


def _merge(into: dict, update: Mapping) -> None:
    """Snakemake's merge of config files: mappings key by key, anything else replaced."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _with_defaults(cls):
    """A validator that fills each missing property with its schema default first, as Snakemake's
    ``validate`` does."""
    check_properties = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": properties})


def load_workflow_config(files: Sequence[str | Path], schema: str | Path) -> dict[str, Any]:
    """The workflow config Snakemake builds from ``files`` (the first its ``configfile``, each next one
    merged over it, as ``--configfile`` does), validated by ``schema`` and completed with its defaults;
    for tools that read the protocol outside Snakemake."""
    config: dict[str, Any] = {}
    for name in files:
        with open(name, encoding="utf-8") as f:
            _merge(config, yaml.safe_load(f) or {})
    with open(schema, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    error = jsonschema.exceptions.best_match(_with_defaults(jsonschema.Draft202012Validator)(rules).iter_errors(config))
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise WMoEError(f"{', '.join(map(str, files))}: {where}: {error.message}; {schema} describes each key")
    return config


def _problem(message: str) -> WMoEError:
    return WMoEError(f"workflow config: {message}")


def _check_names(kind: str, key: str, names, known) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise _problem(f"{key}: unknown {kind} {', '.join(map(str, unknown))}; known: {', '.join(known)}")


def _check(config: Mapping[str, Any]) -> None:
    """Names that only the registries know: methods, datasets, variants, custom target names."""
    m = config["methods"]
    _check_names("method", "methods.main", [m["main"]], method_registry.method_names())
    _check_names("method", "methods.baselines", m["baselines"], method_registry.method_names())
    _check_names("method", "methods.configs", list(m["configs"]), method_registry.method_names())
    if m["main"] in m["baselines"]:
        raise _problem(f"methods.baselines: {m['main']} is the main method")
    dataset_registry.check_keys(config["sources"], "workflow config: sources")
    for key in ("targets", "ablation_targets"):
        for source, targets in config[key].items():
            dataset_registry.check_keys(targets, f"workflow config: {key}.{source}")
    missing = [s for s in config["sources"] if s not in config["targets"]]
    extra = sorted((set(config["targets"]) | set(config["ablation_targets"])) - set(config["sources"]))
    if missing or extra:
        raise _problem("every source needs a `targets` entry and `targets`/`ablation_targets` may only name "
                       f"sources; missing: {missing}, not a source: {extra}")
    own = [n for n in method_registry.method_names() if method_registry.get(n).own_protocol]
    for method in m["configs"]:
        if _protocol(config, method) == "own" and (method not in m["baselines"] or method not in own
                                                   or not method_registry.get(method).trains):
            raise _problem(f"methods.configs.{method}.protocol: own needs a baseline of methods.baselines that "
                           f"trains and whose own paper's protocol is known ({', '.join(own)}); or set it to main")
    variants = method_registry.get(m["main"]).variants
    if not variants:
        raise _problem(f"methods.main: {m['main']} has no variants to train for Table 2; make it a baseline")
    _check_names("variant", "main_variant", [config["main_variant"]], variants)
    _check_names("variant", "variants", config["variants"], variants)
    for name in config["custom_targets"]:
        dataset_registry.check_custom_name(name, f"workflow config: custom_targets.{name}")


@dataclass(frozen=True)
class Plan:
    """Everything a workflow config asks for; build it with :func:`plan`."""

    config: Mapping[str, Any]
    paths: Paths
    main_method: str
    baselines: tuple[str, ...]
    run_configs: dict[str, RunConfig]  # method -> its run config as its run_config job writes it (the
    # released check's method too)
    weights: dict[str, WeightsSource]  # method -> the weights its run config reads from weights.download
    runs: dict[str, str]  # run name -> its method
    datasets: tuple[str, ...]  # registry datasets: the training sources, then the targets
    custom: dict[str, str]  # custom target -> its folder or CSV
    trainings: tuple[Training, ...]
    evaluations: tuple[Evaluation, ...]
    jobs: dict[str, EvaluateJob]
    released: ReleasedCheck

    @property
    def methods(self) -> tuple[str, ...]:
        return (self.main_method, *self.baselines)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every training source: the config's, then those of a baseline's own protocol and of the
        released checkpoints."""
        return tuple(dict.fromkeys([*self.config["sources"], *(t.source for t in self.trainings),
                                    *(i.source for i in self.released.imports)]))

    def run_config_base(self, method: str) -> str:
        return _run_config_base(self.config, method)

    def run_config_overrides(self, method: str) -> dict[str, Any]:
        return _run_config_overrides(self.config, self.paths, method, self.weights.get(method))

    def method_overrides(self, method: str) -> dict[str, Any]:
        return _method_overrides(self.config, method)

    @property
    def shared_overrides(self) -> dict[str, Any]:
        """Dotted keys set on every method's run config: the config's ``overrides``."""
        return dict(self.config["overrides"])

    def weights_file(self, method: str) -> str | None:
        """The downloaded weights file a method's run config reads, if it reads one."""
        src = self.weights.get(method)
        return _weights_file(self.paths, src) if src else None

    def weights_overrides(self, method: str) -> dict[str, Any]:
        """``model.pretrained`` pointing at the method's downloaded weights file, if any."""
        path = self.weights_file(method)
        return {"model.pretrained": path} if path else {}

    @property
    def weights_files(self) -> dict[str, WeightsSource]:
        """Each weights file the plan downloads (its path) -> its source: one per backbone."""
        return {_weights_file(self.paths, src): src for src in self.weights.values()}

    def variant(self, run: str) -> str | None:
        """The Table 2 variant a run trains (``--variant``), for a method with variants; else None."""
        return run if method_registry.get(self.runs[run]).variants else None

    @property
    def tracking_uri(self) -> str:
        """The workflow config's store, else the one every job would use by default."""
        return self.config["mlflow"]["tracking_uri"] or default_tracking_uri()


def _run_config_base(config: Mapping[str, Any], method: str) -> str:
    """The run config a method's is built from: model_config for the main method, else its own base."""
    if method == config["methods"]["main"]:
        return config["model_config"]
    return config["methods"]["configs"].get(method, {}).get("base") or config["model_config"]


def _method_overrides(config: Mapping[str, Any], method: str) -> dict[str, Any]:
    """Dotted keys of a baseline's own settings (``methods.configs.<method>.set``); none for the main method."""
    if method == config["methods"]["main"]:
        return {}
    return dict(config["methods"]["configs"].get(method, {}).get("set") or {})


def _weights_file(paths: Paths, src: WeightsSource) -> str:
    return paths.resources(WEIGHTS).format(file=src.file)


def _run_config_overrides(config: Mapping[str, Any], paths: Paths, method: str,
                          weights: WeightsSource | None) -> dict[str, Any]:
    """Dotted keys set on a method's base: its method, its own settings, the config's overrides, then
    its downloaded weights file."""
    sets = {"method": method, **_method_overrides(config, method), **config["overrides"]}
    if weights is not None:
        sets["model.pretrained"] = _weights_file(paths, weights)
    return sets


def _weights(config: Mapping[str, Any], cfg: RunConfig) -> WeightsSource | None:
    """The weights ``weights.download`` fetches for a method's run config ``cfg`` (before the weights
    are set): its backbone's, when it names that backbone's pretrained tag (a path, another tag or
    random weights are read as configured)."""
    if not config["weights"]["download"]:
        return None
    src = WEIGHTS_SOURCES.get(cfg.model.backbone)
    return src if src is not None and cfg.model.pretrained == src.tag else None


def _protocol(config: Mapping[str, Any], method: str) -> str:
    """``main`` (the main method's Table 1 cells) or ``own`` (the method's own paper's protocol)."""
    return config["methods"]["configs"].get(method, {}).get("protocol") or "main"


def _own_cells(method: str, targets) -> list[tuple[str, str]]:
    """(source, target) of each target as the method's own paper trains for it."""
    own = method_registry.get(method).own_protocol
    return [(own.get(t, own["default"]), t) for t in targets]


def _evaluations(config: Mapping[str, Any], main: str, baselines: tuple[str, ...], custom) -> tuple[list, list]:
    """(trainings, evaluations) in the protocol's order: the main method's Table 1 cells, its ablation,
    the custom targets, then the baselines on the Table 1 cells, or on their targets as a baseline's own
    paper trains for each (``protocol: own``)."""
    seeds = [int(s) for s in config["seeds"]]
    sources, targets = config["sources"], config["targets"]
    cells = [(s, t, config["main_variant"]) for s in sources for t in targets[s]]
    cells += [(s, t, v) for s in sources for t in config["ablation_targets"].get(s, []) for v in config["variants"]]
    cells = list(dict.fromkeys(cells))
    runs = list(dict.fromkeys((s, v) for s, _, v in cells))
    cells += [(s, c, v) for s, v in runs for c in custom]
    table1 = [(s, t) for s in sources for t in targets[s]]
    table1_targets = list(dict.fromkeys(t for _, t in table1))
    trained = {b: _own_cells(b, table1_targets) if _protocol(config, b) == "own" else table1
               for b in baselines if method_registry.get(b).trains}
    untrained = [b for b in baselines if not method_registry.get(b).trains]
    baseline_runs = list(dict.fromkeys((s, b) for b, pairs in trained.items() for s, _ in pairs))
    trainings = [Training(s, v, seed, main) for s, v in runs for seed in seeds]
    trainings += [Training(s, b, seed, b) for s, b in baseline_runs for seed in seeds]
    evaluations = [Evaluation(s, t, v, seed, main) for s, t, v in cells for seed in seeds]
    evaluations += [Evaluation(s, t, b, seed, b) for b, pairs in trained.items() for s, t in pairs for seed in seeds]
    evaluations += [Evaluation(UNTRAINED, t, b, 0, b) for b in untrained for t in table1_targets]
    return trainings, evaluations


def _released(config: Mapping[str, Any], run_config: RunConfig) -> ReleasedCheck:
    """The released-checkpoint check over the targets of the config's Table 1 cells (``run_config``:
    the method's, which the imports use and whose seed the evaluations carry)."""
    targets = list(dict.fromkeys(t for s in config["sources"] for t in config["targets"][s]))
    by_source = {c.trained_on: c for c in RELEASED}
    cells = _own_cells(RELEASED_METHOD, targets)
    imports = tuple(ReleasedImport(s, by_source[s].local) for s in dict.fromkeys(s for s, _ in cells))
    evaluations = tuple(Evaluation(s, t, RELEASED_RUN, run_config.train.seed, RELEASED_METHOD, imported=True)
                        for s, t in cells)
    jobs = _jobs(evaluations, (), {RELEASED_METHOD: run_config}, {}, prefix="evaluate_released")
    return ReleasedCheck(imports, evaluations, jobs)


def _jobs(evaluations, trainings, run_configs: dict[str, RunConfig], custom,
          prefix: str = "evaluate") -> dict[str, EvaluateJob]:
    by_target: dict[str, list[Evaluation]] = {}
    for e in evaluations:
        by_target.setdefault(e.target, []).append(e)
    jobs = {}
    for target, members in by_target.items():
        for digest, group in encoder_passes(members, lambda e: run_configs[e.method]).items():
            cached = any(t.source == target and run_configs[t.method].train.feature_cache
                         and backbone_digest(run_configs[t.method]) == digest for t in trainings)
            name = f"{prefix}_{target}_{digest}"
            jobs[name] = EvaluateJob(name, target, target in custom, digest, tuple(group), cached)
    # Snakemake's order: by first evaluation, as the rules are defined.
    first = {e: i for i, e in enumerate(evaluations)}
    return dict(sorted(jobs.items(), key=lambda kv: first[kv[1].evaluations[0]]))


def plan(config: Mapping[str, Any]) -> Plan:
    """The protocol of a validated workflow config; a name no registry knows or a run config that does
    not validate is a one-line error."""
    _check(config)
    p = config["paths"]
    paths = Paths(p["resources"], p["results"], p["reports"], p["logs"])
    main = config["methods"]["main"]
    baselines = tuple(config["methods"]["baselines"])
    custom = dict(config["custom_targets"])

    def run_config(method: str, weights: WeightsSource | None) -> RunConfig:
        return config_with_overrides(_run_config_base(config, method),
                                     _run_config_overrides(config, paths, method, weights),
                                     f"workflow config `overrides` on the {method} run config")

    # The weights a method downloads follow from its run config's backbone and pretrained tag. Each run
    # config is checked now, while the DAG is built: a bad value (train.epochs: 0, a typo) fails before
    # any job runs.
    methods = tuple(dict.fromkeys((main, *baselines, RELEASED_METHOD)))
    weights = {}
    for method in methods:
        src = _weights(config, run_config(method, None))
        if src is not None:
            weights[method] = src
    run_configs = {method: run_config(method, weights.get(method)) for method in methods}
    trainings, evaluations = _evaluations(config, main, baselines, custom)
    released = _released(config, run_configs[RELEASED_METHOD])
    runs = {**{v: main for v in dict.fromkeys([config["main_variant"], *config["variants"]])},
            **{b: b for b in baselines}}
    registry_targets = [e.target for e in evaluations if e.target not in custom]
    return Plan(
        config=config, paths=paths, main_method=main, baselines=baselines, run_configs=run_configs, runs=runs,
        weights=weights,
        datasets=tuple(dict.fromkeys([*config["sources"], *(t.source for t in trainings), *registry_targets])),
        custom=custom, trainings=tuple(trainings), evaluations=tuple(evaluations),
        jobs=_jobs(evaluations, trainings, run_configs, custom), released=released,
    )
