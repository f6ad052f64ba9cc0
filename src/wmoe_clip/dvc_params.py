"""DVC's parameters and evaluate stages, generated from the protocol (``wmoe_clip.plan``).

dvc.yaml's stages are templates over params.yaml, which ``dvc exp run`` composes from config/dvc/
(Hydra: a setup of config/dvc/setup/, the first of config/dvc/setups.yaml by default, or
``-S setup=NAME``). Each setup mirrors a workflow config, named in config/dvc/setups.yaml;
``wmoe-clip dvc-params`` writes every setup, params.yaml (the default setup) and the evaluate stages of
dvc.yaml from the plans of those configs, and ``--check`` fails when a committed file is not what it
would write.

DVC 3's templating puts a value, never a list, into a stage's cmd, deps and outs. So every list is
expanded here: the params hold one item per dataset, custom target, run config, training and
evaluate job, with its paths and command words as plain fields. An evaluate job is Snakemake's (one
per target and backbone configuration, its command word for word); its number of models varies, so
it is an item of the template for that number, ``evaluate_n<K>``, whose deps and outs name the K
models field by field: dvc.yaml holds one such template, between the markers below, for every K
that some setup uses, and each setup's ``evaluate`` has a (possibly empty) entry for each.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import resolve_config_path
from .errors import WMoEError
from .plan import (CUSTOM_PREPARED, CUSTOM_PREPARE_REPORT, CUSTOM_RAW, EVAL_FIGURE, EVAL_JSON, FEATURE_CACHE, HISTORY,
                   MODEL, PREPARE_REPORT, PREPARED, RAW, REPORT_FILES, RUN_CONFIG, RUN_RECORD, TRACKING_DONE,
                   TRAIN_DIR, Plan, load_workflow_config, plan)

_PACKAGE = Path(__file__).resolve().parent
SETUPS = "config/dvc/setups.yaml"
SETUP_DIR = "config/dvc/setup"
SCHEMA = "workflow/schemas/config.schema.yaml"
PARAMS = "params.yaml"
DVC_YAML = "dvc.yaml"
BEGIN = "  # >>> evaluate stages, written by `wmoe-clip dvc-params`: one per number of models of a job\n"
END = "  # <<< evaluate stages\n"

_SETUP_HEADER = """\
# @package _global_
# Written by `wmoe-clip dvc-params` from the workflow config {files}
# (config/dvc/setups.yaml): edit that and rerun the command, not this file. `dvc exp run -S setup={name}`
# runs it; `-S run_config.set.KEY=VALUE` sets a run-config key on every method for one experiment.
"""
_PARAMS_HEADER = """\
# Parameters of the DVC stages (dvc.yaml): the setup {name} of config/dvc/setup/, which plain
# `dvc repro` runs. `dvc exp run` rewrites this file from config/dvc/ and `wmoe-clip dvc-params` from
# the workflow configs, so edit those, not this file.
"""


def _nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.epochs": 2}`` as ``{"train": {"epochs": 2}}``: what ``--overrides FILE:KEY`` reads back."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _dirname(path: str) -> str:
    return posixpath.dirname(path)


def _input(p: Plan, method: str) -> str:
    """The file a run_config stage depends on besides its params: the downloaded weights of its
    backbone (trainings wait for them), else the base run config's file: a shipped one by its place in
    the repository's src/ (wherever this package is imported from), a user's as given."""
    weights = p.weights_file(method)
    if weights:
        return weights
    path = resolve_config_path(p.run_config_base(method)).resolve()
    if path.is_relative_to(_PACKAGE):
        return posixpath.join("src", path.relative_to(_PACKAGE.parent).as_posix())
    return os.path.relpath(path).replace(os.sep, "/")


def _evaluate_items(p: Plan) -> dict[int, dict[str, dict[str, str]]]:
    """Number of models -> job key (``{target}_{backbone}``) -> the job's fields."""
    items: dict[int, dict[str, dict[str, str]]] = {}
    for job in p.jobs.values():
        fields = {"target": job.target, "data": _dirname(job.data(p.paths)), "meta": job.data(p.paths),
                  "options": " ".join(job.options(p.paths)), "models": " ".join(job.model_args(p.paths))}
        for i, e in enumerate(job.evaluations):
            fields |= {f"model{i}": e.model_inputs(p.paths)[0], f"json{i}": e.path(p.paths, EVAL_JSON),
                       f"png{i}": e.path(p.paths, EVAL_FIGURE)}
        items.setdefault(len(job.evaluations), {})[f"{job.target}_{job.backbone}"] = fields
    return items


def _prepared(prepared: str, report: str) -> dict[str, str]:
    """A prepare stage's folder and outputs, from its manifest and report paths."""
    return {"prepared": _dirname(prepared), "meta": prepared, "report": report}


def _trainings(p: Plan) -> dict[str, dict[str, Any]]:
    """Training key (``{source}-{run}-{seed}``, DVC's former matrix names) -> its fields."""
    res, out = p.paths.resources, p.paths.results
    items = {}
    for t in p.trainings:
        variant = p.variant(t.run)
        items[f"{t.source}-{t.run}-{t.seed}"] = {
            "source": t.source, "seed": t.seed, "config": out(RUN_CONFIG).format(method=t.method),
            "data": _dirname(res(PREPARED).format(dataset=t.source)), "meta": res(PREPARED).format(dataset=t.source),
            "variant": f"--variant {variant}" if variant else "", "out": t.path(p.paths, TRAIN_DIR),
            "model": t.path(p.paths, MODEL), "history": t.path(p.paths, HISTORY), "record": t.path(p.paths, RUN_RECORD),
        }
    return items


def _report(p: Plan) -> dict[str, str]:
    """The report's inputs (the folders of the evaluations and trainings) and its files."""
    out, reports = p.paths.results, p.paths.reports_dir
    files = {name.split(".")[0]: posixpath.join(reports, name) for name in REPORT_FILES}
    return {"results": p.paths.results_dir, "evaluations": out(_top(EVAL_JSON)), "trainings": out(_top(TRAIN_DIR)),
            "out": reports, **files}


def setup_params(p: Plan, sizes: list[int]) -> dict[str, Any]:
    """The params of a DVC setup for the plan ``p``; ``evaluate`` has an entry for every size in ``sizes``."""
    c, paths = p.config, p.paths
    res, out = paths.resources, paths.results
    synth = c["data_source"] == "synth"
    args = {key: c[f"synth_{key}"] for key in ("size", "seed") if synth and c[f"synth_{key}"] is not None}
    evaluate = _evaluate_items(p)
    return {
        "paths": {"resources": paths.resources_dir, "results": paths.results_dir, "reports": paths.reports_dir},
        "data": {"source": c["data_source"], "args": args},
        "prepare": {"strict": c["strict_counts"]},
        "datasets": {d: {"raw": res(RAW).format(dataset=d),
                         **_prepared(res(PREPARED).format(dataset=d), res(PREPARE_REPORT).format(dataset=d))}
                     for d in p.datasets},
        "custom_targets": {name: {"source": source, **_prepared(res(CUSTOM_PREPARED).format(custom=name),
                                                                 res(CUSTOM_PREPARE_REPORT).format(custom=name))}
                           for name, source in p.custom.items()},
        # Custom targets the demo generates: those the config places where `synth folder` writes them.
        "custom_synth": {name: source for name, source in p.custom.items()
                         if synth and source == res(CUSTOM_RAW).format(custom=name)},
        "weights": [{"dir": _dirname(path), "file": path, "backbone": src.backbone}
                    for path, src in p.weights_files.items()],
        "feature_cache": res(FEATURE_CACHE),
        "tracking": {"marker": out(TRACKING_DONE)},
        "mlflow": {"experiment": c["mlflow"]["experiment"]},
        "run_config": {"set": _nested(p.shared_overrides)},
        "run_configs": {m: {"base": p.run_config_base(m), "input": _input(p, m),
                            "out": out(RUN_CONFIG).format(method=m),
                            "set": _nested({**p.method_overrides(m), **p.weights_overrides(m)})}
                        for m in p.methods},
        "trainings": _trainings(p),
        "evaluate": {f"n{k}": evaluate.get(k, {}) for k in sizes},
        "report": _report(p),
    }


def _top(pattern: str) -> str:
    """The folder of the results layout that holds every file of ``pattern``."""
    return pattern.split("/", 1)[0]


def evaluate_stages(sizes: list[int]) -> str:
    """dvc.yaml's evaluate stage templates, one per number of models, as YAML lines of ``stages:``."""
    lines = [BEGIN]
    for k in sizes:
        lines += [f"  evaluate_n{k}:\n", f"    foreach: ${{evaluate.n{k}}}\n", "    do:\n",
                  "      cmd: >-\n",
                  "        MLFLOW_TRACKING_URI=sqlite:///$(pwd)/mlflow.db MLFLOW_EXPERIMENT_NAME=${mlflow.experiment}\n",
                  "        $WMOE_DVC_LAUNCHER wmoe-clip evaluate --target ${item.target} --data ${item.data}\n",
                  "        ${item.options} ${item.models}\n",
                  "      deps:\n", "        - ${item.meta}\n",
                  *(f"        - ${{item.model{i}}}\n" for i in range(k)),
                  "        - ${tracking.marker}\n", "        - src/wmoe_clip\n",
                  "      metrics:\n",
                  *(f"        - ${{item.json{i}}}:\n            cache: false\n            persist: true\n"
                    for i in range(k)),
                  "      outs:\n",
                  *(f"        - ${{item.png{i}}}:\n            persist: true\n" for i in range(k))]
    return "".join([*lines, END])


@dataclass(frozen=True)
class Generated:
    """Each file ``wmoe-clip dvc-params`` writes, with its text."""

    files: dict[str, str]


def generate() -> Generated:
    """The setups, params.yaml and dvc.yaml of the project in the working directory, as its workflow
    configs make them (paths in them are relative to it, as Snakemake and DVC read them)."""
    setups = _read_yaml(Path(SETUPS))
    if not isinstance(setups, dict) or not setups or not all(isinstance(f, list) for f in setups.values()):
        raise WMoEError(f"{SETUPS}: expected setup names, each with the list of its workflow config files")
    plans = {name: plan(load_workflow_config(files, SCHEMA)) for name, files in setups.items()}
    sizes = sorted({len(job.evaluations) for p in plans.values() for job in p.jobs.values()})
    files = {}
    for name, p in plans.items():
        header = _SETUP_HEADER.format(files=" + ".join(setups[name]), name=name)
        files[f"{SETUP_DIR}/{name}.yaml"] = header + _dump(setup_params(p, sizes))
    default = next(iter(setups))
    files[PARAMS] = _PARAMS_HEADER.format(name=default) + _dump(setup_params(plans[default], sizes))
    text = Path(DVC_YAML).read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise WMoEError(f"{DVC_YAML}: expected one block of evaluate stages between the lines "
                        f"{BEGIN.strip()!r} and {END.strip()!r}")
    head, rest = text.split(BEGIN)
    files[DVC_YAML] = head + evaluate_stages(sizes) + rest.split(END)[1]
    return Generated(files)


def _dump(values: dict[str, Any]) -> str:
    return yaml.safe_dump(values, sort_keys=False, width=120)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WMoEError(f"{path} not found; run wmoe-clip dvc-params in the repository's root folder") from None


def stale(generated: Generated) -> list[str]:
    """The files whose text in the working directory differs from the generated one."""
    return [name for name, text in generated.files.items()
            if not Path(name).is_file() or Path(name).read_text(encoding="utf-8") != text]
