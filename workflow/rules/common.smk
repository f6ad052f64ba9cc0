# Shared definitions: config validation, the job lists of the protocol, path patterns, inputs.
# Rule files hold rules only (snakemake --lint: no functions mixed with rules).
import json
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from wmoe_clip.config import ConfigError, config_with_overrides
from wmoe_clip.data.registry import check_custom_name, check_keys
from wmoe_clip.model import registry
from wmoe_clip.model.encoder_pass import backbone_digest


validate(config, schema="../schemas/config.schema.yaml")
# Dataset names are the registry's keys (src/wmoe_clip/data/registry.yaml); the schema lists none.
check_keys([*config["sources"], *(t for key in ("targets", "ablation_targets") for ts in config[key].values()
                                  for t in ts)], "workflow config sources/targets/ablation_targets")
for _name in config["custom_targets"]:
    check_custom_name(_name, "workflow config custom_targets")

# Methods: the main one (Table 1's "ours" and Table 2) and the baselines measured beside it. A baseline
# that trains is trained on every source with Table 1 targets and evaluated on those targets; one that
# does not (clip) is evaluated once per Table 1 target, under source `none` and seed 0.
MAIN_METHOD = config["methods"]["main"]
BASELINES = list(config["methods"]["baselines"])
TRAINED_BASELINES = [b for b in BASELINES if registry.get(b).trains]
UNTRAINED_BASELINES = [b for b in BASELINES if not registry.get(b).trains]
NONE = registry.UNTRAINED_SOURCE
METHOD_CONFIGS = config["methods"]["configs"]


def method_base(method):
    """The run config a method's is built from: model_config for the main method, else its own base."""
    if method == MAIN_METHOD:
        return config["model_config"]
    return METHOD_CONFIGS.get(method, {}).get("base") or config["model_config"]


def method_overrides(method):
    """Dotted keys set on a method's base: its method, its own settings, the config's overrides."""
    own = {} if method == MAIN_METHOD else METHOD_CONFIGS.get(method, {}).get("set") or {}
    return {"method": method, **own, **config["overrides"]}


PATHS = config["paths"]
RES = PATHS["resources"]
OUT = PATHS["results"]
REPORTS = PATHS["reports"]
LOGS = PATHS["logs"]
SEEDS = [int(s) for s in config["seeds"]]
MAIN = config["main_variant"]


def _protocol_cells():
    """(source, target, variant) of every evaluation: the main model, then the ablation."""
    missing = [s for s in config["sources"] if s not in config["targets"]]
    extra = sorted((set(config["targets"]) | set(config["ablation_targets"])) - set(config["sources"]))
    if missing or extra:
        raise ValueError(
            "config: every source needs a `targets` entry and `targets`/`ablation_targets` may only "
            f"name sources; missing: {missing}, not a source: {extra}"
        )
    cells = [(s, t, MAIN) for s in config["sources"] for t in config["targets"][s]]
    cells += [
        (s, t, v)
        for s in config["sources"]
        for t in config["ablation_targets"].get(s, [])
        for v in config["variants"]
    ]
    return list(dict.fromkeys(cells))


EVAL_CELLS = _protocol_cells()
TRAIN_CELLS = list(dict.fromkeys((s, v) for s, _, v in EVAL_CELLS))
DATASETS = list(dict.fromkeys([*config["sources"], *(t for _, t, _ in EVAL_CELLS)]))
VARIANTS = list(dict.fromkeys([MAIN, *config["variants"]]))
# Users' own datasets (name -> folder or CSV): every trained model of the main method is evaluated on each.
CUSTOM = dict(config["custom_targets"])
CUSTOM_CELLS = [(s, c, v) for s, v in TRAIN_CELLS for c in CUSTOM]
# The baselines on the main method's Table 1 cells (not the ablation's); a run is named by its method.
TABLE1_CELLS = [(s, t) for s in config["sources"] for t in config["targets"][s]]
BASELINE_TRAIN_CELLS = list(dict.fromkeys((s, b) for b in TRAINED_BASELINES for s, _ in TABLE1_CELLS))
BASELINE_EVAL_CELLS = [(s, t, b) for b in TRAINED_BASELINES for s, t in TABLE1_CELLS]
UNTRAINED_CELLS = [(NONE, t, b) for b in UNTRAINED_BASELINES for t in dict.fromkeys(t for _, t in TABLE1_CELLS)]
# The run name (the `{variant}` path segment) -> its method.
RUN_METHOD = {**{v: MAIN_METHOD for v in VARIANTS}, **{b: b for b in BASELINES}}

# Path patterns (ARCHITECTURE.md, "Results layout"); the prefixes come from the config.
RAW = f"{RES}/raw/{{dataset}}"
# A download is finished when its record exists (the folder may already hold hand-placed files);
# a synthetic set is written as a whole folder.
RAW_READY = f"{RAW}/download.json" if config["data_source"] == "download" else RAW
PREPARED = f"{RES}/prepared/{{dataset}}/meta.json"
PREPARE_REPORT = f"{RES}/prepared/{{dataset}}/prepare.json"
CUSTOM_RAW = f"{RES}/raw/custom/{{custom}}"
CUSTOM_PREPARED = f"{RES}/prepared/custom/{{custom}}/meta.json"
CUSTOM_PREPARE_REPORT = f"{RES}/prepared/custom/{{custom}}/prepare.json"
WEIGHTS = f"{RES}/weights/vit_l14_336_openai.pt"
RUN_CONFIG = f"{OUT}/run_config/{{method}}.yaml"
TRACKING_DONE = f"{OUT}/tracking/initialised.json"
TRAIN_DIR = f"{OUT}/train/{{source}}/{{variant}}/seed{{seed}}"
EVAL_JSON = f"{OUT}/eval/{{source}}/{{target}}/{{variant}}/seed{{seed}}.json"
EVAL_FIGURE = f"{OUT}/eval/{{source}}/{{target}}/{{variant}}/seed{{seed}}.png"
REPORT_FILES = [f"{REPORTS}/{name}" for name in ("index.html", "table1.tex", "table2.tex")]

FEATURE_CACHE = f"{RES}/feature-cache"

TRACKING_URI = config["mlflow"]["tracking_uri"] or "sqlite:///" + os.path.abspath("mlflow.db")


def run_config_overrides(method):
    """What the method's run_config job sets on its base: its overrides, then the downloaded weights."""
    sets = method_overrides(method)
    if config["weights"]["download"]:
        sets["model.pretrained"] = WEIGHTS
    return sets


def _run_configs():
    """Each method's run config as its run_config job will write it, checked by the library now, while
    the DAG is built: a bad value (train.epochs: 0, a typo) fails before any job runs."""
    configs = {}
    for method in [MAIN_METHOD, *BASELINES]:
        try:
            configs[method] = config_with_overrides(method_base(method), run_config_overrides(method),
                                                    f"workflow config `overrides` on the {method} run config")
        except ConfigError as exc:
            raise WorkflowError(str(exc)) from None
    return configs


RUN_CONFIGS = _run_configs()
# (source, target, run, seed) of every evaluation; a method that does not train has no seeds: seed0.
EVALUATIONS = [(s, t, v, seed) for s, t, v in EVAL_CELLS + CUSTOM_CELLS + BASELINE_EVAL_CELLS for seed in SEEDS]
EVALUATIONS += [(s, t, v, 0) for s, t, v in UNTRAINED_CELLS]


def all_eval_jsons():
    return [EVAL_JSON.format(source=s, target=t, variant=v, seed=seed) for s, t, v, seed in EVALUATIONS]


def _evaluate_jobs():
    """One evaluate job per (target, encoder pass): every model evaluated on the target whose run config
    has that backbone_digest, scored from one pass of the target's images through the frozen encoder.

    A job reads (or builds) the target's feature cache when a training of its backbone configuration on
    that target caches its features: the training has encoded those very images already.
    """
    jobs = {}
    for s, t, v, seed in EVALUATIONS:
        digest = backbone_digest(RUN_CONFIGS[RUN_METHOD[v]])
        job = jobs.setdefault(f"evaluate_{t}_{digest}", {"target": t, "backbone": digest, "models": []})
        job["models"].append((s, v, seed))
    for job in jobs.values():
        job["feature_cache"] = any(
            s == job["target"] and cfg.train.feature_cache and backbone_digest(cfg) == job["backbone"]
            for s, v in TRAIN_CELLS + BASELINE_TRAIN_CELLS
            for cfg in [RUN_CONFIGS[RUN_METHOD[v]]]
        )
    return jobs


EVALUATE_JOBS = _evaluate_jobs()


def evaluate_job_inputs(job):
    """Each model's checkpoint and training record, or run config for a method that does not train."""
    inputs = []
    for s, v, seed in job["models"]:
        if s == NONE:
            inputs.append(RUN_CONFIG.format(method=v))
        else:
            # run.json is read by evaluate (--train-run default): it links the evaluation to its training run.
            train_dir = TRAIN_DIR.format(source=s, variant=v, seed=seed)
            inputs += [f"{train_dir}/model.pt", f"{train_dir}/run.json"]
    return inputs


def evaluate_job_outputs(job):
    return [path.format(source=s, target=job["target"], variant=v, seed=seed)
            for s, v, seed in job["models"] for path in (EVAL_JSON, EVAL_FIGURE)]


def evaluate_job_models(job):
    """The command line's models, each `--checkpoint FILE` or `--config RUN_CONFIG` with its outputs."""
    words = []
    for s, v, seed in job["models"]:
        cell = dict(source=s, target=job["target"], variant=v, seed=seed)
        model = (f"--config {RUN_CONFIG.format(method=v)}" if s == NONE
                 else f"--checkpoint {TRAIN_DIR.format(**cell)}/model.pt")
        words.append(f"{model} --out {EVAL_JSON.format(**cell)} --figure {EVAL_FIGURE.format(**cell)}")
    return " ".join(words)


def evaluate_job_options(job):
    """The job's options besides its models: the feature cache, where the target's is shared."""
    cache = "--feature-cache " if job["feature_cache"] else ""
    return f"{cache}--cache-dir {FEATURE_CACHE}"


def apply_evaluate_settings(name):
    """`--set-threads evaluate=N` and `--set-resources evaluate:KEY=VALUE` (the profiles, `make demo`)
    apply to every evaluate job, on top of its own threads and resources, as Snakemake applies them to
    the single rule of that name."""
    settings = workflow.resource_settings
    resources = workflow.get_rule(name).resources
    if "evaluate" in settings.overwrite_threads:
        resources["_cores"] = settings.overwrite_threads["evaluate"]
    if "evaluate" in settings.overwrite_resources:
        resources.update(settings.overwrite_resources["evaluate"])


def target_data(target):
    """The prepared manifest of an evaluation's target: a registry dataset or a custom target."""
    if target in CUSTOM:
        return CUSTOM_PREPARED.format(custom=target)
    return PREPARED.format(dataset=target)


def custom_source(wildcards):
    """The folder or CSV of a custom target, as the config gives it."""
    return CUSTOM[wildcards.custom]


def all_histories():
    return [
        f"{TRAIN_DIR}/history.json".format(source=s, variant=v, seed=seed)
        for s, v in TRAIN_CELLS + BASELINE_TRAIN_CELLS
        for seed in SEEDS
    ]


def train_run_config(wildcards):
    """The run config of the method a training's run name belongs to."""
    return RUN_CONFIG.format(method=RUN_METHOD[wildcards.variant])


def variant_option(wildcards):
    """`--variant NAME` for a method with variants (the run name is the variant); nothing otherwise."""
    return f"--variant {wildcards.variant}" if registry.get(RUN_METHOD[wildcards.variant]).variants else ""


def tracking_inputs(wildcards):
    """Tracked jobs wait for the one job that creates the MLflow store (docs/PIPELINE.md §3.2)."""
    return [TRACKING_DONE] if config["mlflow"]["enabled"] else []


def tracking_env():
    """Shell prefix pointing tracked jobs at the store; empty when tracking is off."""
    if config["mlflow"]["enabled"]:
        return f"MLFLOW_TRACKING_URI='{TRACKING_URI}' MLFLOW_EXPERIMENT_NAME='{config['mlflow']['experiment']}'"
    return ""


def tracking_flag():
    return "" if config["mlflow"]["enabled"] else "--no-tracking"


def weights_inputs(wildcards):
    return [WEIGHTS] if config["weights"]["download"] else []


def run_config_base(wildcards):
    return method_base(wildcards.method)


def run_config_sets(wildcards):
    """`--set` options for `wmoe-clip run-config`: the method and its own settings, the config's
    overrides, then the weights file."""
    sets = run_config_overrides(wildcards.method)
    # Values go through YAML on the other side: JSON spells null, booleans and lists the same way.
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in sets.items()}
    return " ".join(f"--set '{key}={value}'" for key, value in text.items())


def raw_dir(wildcards, input):
    return input.raw if config["data_source"] == "synth" else os.path.dirname(input.raw)


wildcard_constraints:
    dataset="|".join(DATASETS),
    custom="|".join(CUSTOM),
    source="|".join([*config["sources"], NONE]),
    variant="|".join([*VARIANTS, *BASELINES]),
    method="|".join([MAIN_METHOD, *BASELINES]),
    seed=r"\d+",
