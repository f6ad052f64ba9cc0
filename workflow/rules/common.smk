# Shared definitions: config validation, the job lists of the protocol, path patterns, inputs.
# Rule files hold rules only (snakemake --lint: no functions mixed with rules).
import json
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from wmoe_clip.config import ConfigError, config_with_overrides


validate(config, schema="../schemas/config.schema.yaml")
# The run config with the overrides, checked by the library now, while the DAG is built: a bad
# value (train.epochs: 0, a typo) fails before any job runs rather than in the run_config job.
try:
    config_with_overrides(config["model_config"], config["overrides"], "workflow config `overrides`")
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

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
# Users' own datasets (name -> folder or CSV): every trained model is evaluated on each.
CUSTOM = dict(config["custom_targets"])
CUSTOM_CELLS = [(s, c, v) for s, v in TRAIN_CELLS for c in CUSTOM]

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
RUN_CONFIG = f"{OUT}/run_config.yaml"
TRACKING_DONE = f"{OUT}/tracking/initialised.json"
TRAIN_DIR = f"{OUT}/train/{{source}}/{{variant}}/seed{{seed}}"
EVAL_JSON = f"{OUT}/eval/{{source}}/{{target}}/{{variant}}/seed{{seed}}.json"
EVAL_FIGURE = f"{OUT}/eval/{{source}}/{{target}}/{{variant}}/seed{{seed}}.png"
REPORT_FILES = [f"{REPORTS}/{name}" for name in ("index.html", "table1.tex", "table2.tex")]

TRACKING_URI = config["mlflow"]["tracking_uri"] or "sqlite:///" + os.path.abspath("mlflow.db")


def all_eval_jsons():
    return [
        EVAL_JSON.format(source=s, target=t, variant=v, seed=seed)
        for s, t, v in EVAL_CELLS + CUSTOM_CELLS
        for seed in SEEDS
    ]


def target_data(wildcards):
    """The prepared manifest of an evaluation's target: a registry dataset or a custom target."""
    if wildcards.target in CUSTOM:
        return CUSTOM_PREPARED.format(custom=wildcards.target)
    return PREPARED.format(dataset=wildcards.target)


def custom_source(wildcards):
    """The folder or CSV of a custom target, as the config gives it."""
    return CUSTOM[wildcards.custom]


def all_histories():
    return [
        f"{TRAIN_DIR}/history.json".format(source=s, variant=v, seed=seed)
        for s, v in TRAIN_CELLS
        for seed in SEEDS
    ]


def tracking_inputs(wildcards):
    """Tracked jobs wait for the one job that creates the MLflow store (PIPELINE.md §3.2)."""
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


def run_config_sets(wildcards):
    """`--set` options for `wmoe-clip run-config`: the config's overrides, then the weights file."""
    sets = {**config["overrides"]}
    if config["weights"]["download"]:
        sets["model.pretrained"] = WEIGHTS
    # Values go through YAML on the other side: JSON spells null, booleans and lists the same way.
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in sets.items()}
    return " ".join(f"--set '{key}={value}'" for key, value in text.items())


def raw_dir(wildcards, input):
    return input.raw if config["data_source"] == "synth" else os.path.dirname(input.raw)


wildcard_constraints:
    dataset="|".join(DATASETS),
    custom="|".join(CUSTOM),
    source="|".join(config["sources"]),
    target="|".join([*DATASETS, *CUSTOM]),
    variant="|".join(VARIANTS),
    seed=r"\d+",
