# Snakemake glue over the protocol (wmoe_clip.plan): config validation, input functions and wildcard
# constraints. The plan decides the jobs, their run configs and every path. Rule files hold rules only
# (snakemake --lint: no functions mixed with rules).
import glob
import json
import os
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from wmoe_clip import plan as layout
from wmoe_clip.errors import WMoEError


validate(config, schema="../schemas/config.schema.yaml")

try:
    PLAN = layout.plan(config)
except WMoEError as exc:
    raise WorkflowError(str(exc)) from None

PATHS = PLAN.paths
DOWNLOAD = config["data_source"] == "download"
# A download is finished when its record exists (the folder may already hold hand-placed files);
# a synthetic set is written as a whole folder.
RAW_READY = PATHS.resources(layout.DOWNLOAD_RECORD if DOWNLOAD else layout.RAW)
WEIGHTS = PATHS.resources(layout.WEIGHTS)
# Downloaded weights file -> its backbone (model.backbone), one per backbone the run configs read.
WEIGHTS_BACKBONES = {path: src.backbone for path, src in PLAN.weights_files.items()}
FEATURE_CACHE = PATHS.resources(layout.FEATURE_CACHE)
RUN_CONFIG = PATHS.results(layout.RUN_CONFIG)
TRACKING_DONE = PATHS.results(layout.TRACKING_DONE)
REPORT_FILES = PATHS.report_files
EVAL_JSONS = [e.path(PATHS) for e in PLAN.evaluations]
HISTORIES = [t.path(PATHS, layout.HISTORY) for t in PLAN.trainings]
# The released-checkpoint check: its imports by training source, its evaluations and its report.
RELEASED = PLAN.released
RELEASED_IMPORTS = {i.source: i for i in RELEASED.imports}
RELEASED_EVAL_JSONS = [e.path(PATHS) for e in RELEASED.evaluations]
RELEASED_REPORT_FILES = PATHS.released_report_files
# Every evaluate job with the name of its log pattern: the protocol's, then the released check's.
EVALUATE_JOBS = [*((job, "evaluate") for job in PLAN.jobs.values()),
                 *((job, "evaluate_released") for job in RELEASED.jobs.values())]
# The published numbers the report compares with (the files that config/paper_results.yaml's references: name).
REFERENCES = sorted(glob.glob("config/references/*.yaml"))
# `--set-threads evaluate=N` and `--set-resources evaluate:KEY=VALUE` (the profiles, `make demo`) size
# every evaluate job, as Snakemake would size a single rule named evaluate; they are the evaluate rules'
# own threads and resources. Snakemake holds them parsed; a rule directive takes them as written
# (`raw`: an int or a string like "2h").
EVALUATE_THREADS = workflow.resource_settings.overwrite_threads.get("evaluate", 4)
EVALUATE_RESOURCES = {
    "gpu": 1, "mem_mb": 32000, "runtime": 120,
    **{key: getattr(value, "raw", value)
       for key, value in workflow.resource_settings.overwrite_resources.get("evaluate", {}).items()},
}


def custom_source(wildcards):
    """The folder or CSV of a custom target, as the config gives it."""
    return PLAN.custom[wildcards.custom]


def train_run_config(wildcards):
    """The run config of the method a training's run name belongs to."""
    return RUN_CONFIG.format(method=PLAN.runs[wildcards.run])


def variant_option(wildcards):
    """`--variant NAME` for a method with variants (the run name is the variant); nothing otherwise."""
    variant = PLAN.variant(wildcards.run)
    return f"--variant {variant}" if variant else ""


def tracking_inputs(wildcards):
    """Tracked jobs wait for the one job that creates the MLflow store (docs/PIPELINE.md §3.2)."""
    return [TRACKING_DONE] if config["mlflow"]["enabled"] else []


def tracking_env():
    """Shell prefix pointing tracked jobs at the store; empty when tracking is off."""
    if config["mlflow"]["enabled"]:
        return f"MLFLOW_TRACKING_URI='{PLAN.tracking_uri}' MLFLOW_EXPERIMENT_NAME='{config['mlflow']['experiment']}'"
    return ""


def tracking_flag():
    return "" if config["mlflow"]["enabled"] else "--no-tracking"


def weights_inputs(wildcards):
    """The downloaded weights file the method's run config reads, if any."""
    path = PLAN.weights_file(wildcards.method)
    return [path] if path else []


def weights_backbone(wildcards, output):
    return WEIGHTS_BACKBONES[output[0]]


def run_config_base(wildcards):
    return PLAN.run_config_base(wildcards.method)


def run_config_sets(wildcards):
    """`--set` options for `wmoe-clip run-config`: the method and its own settings, the config's
    overrides, then its weights file."""
    sets = PLAN.run_config_overrides(wildcards.method)
    # Values go through YAML on the other side: JSON spells null, booleans and lists the same way.
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in sets.items()}
    return " ".join(f"--set '{key}={value}'" for key, value in text.items())


def released_checkpoint(wildcards):
    """The released checkpoint trained on the source, where download-weights puts it (or a user placed it)."""
    return RELEASED_IMPORTS[wildcards.source].checkpoint_path(PATHS)


def released_inputs(wildcards):
    """The download's record when the workflow fetches the checkpoints, else the hand-placed file itself."""
    if config["weights"]["download"]:
        return [RELEASED.download_record(PATHS)]
    return [released_checkpoint(wildcards)]


def raw_dir(wildcards, input):
    return os.path.dirname(input.raw) if DOWNLOAD else input.raw


wildcard_constraints:
    dataset="|".join(PLAN.datasets),
    custom="|".join(PLAN.custom),
    source="|".join([*PLAN.sources, layout.UNTRAINED]),
    run="|".join(PLAN.runs),
    method="|".join(PLAN.run_configs),
    seed=r"\d+",
    # No weights to download: a pattern that matches nothing (Snakemake reads an empty one as "anything",
    # and download_weights would then claim the released checkpoints placed under weights/ by hand).
    file="|".join(re.escape(src.file) for src in PLAN.weights_files.values()) or "(?!)",
