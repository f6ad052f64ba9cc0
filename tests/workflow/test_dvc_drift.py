"""dvc.yaml and the Snakemake DAG name the same outputs and run the same commands, for the paper and
the demo alike (each DVC setup of config/dvc/ against the workflow config it mirrors), so the two
descriptions cannot drift.

Evaluation is the one place where they differ in form: Snakemake runs one job per (target, encoder
pass) that scores all its models, while DVC, whose templating cannot give a stage a computed list of
outputs, has a stage per model; each DVC stage runs its model with exactly the options of the Snakemake
job that holds it."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from wmoe_clip.cli import main
from wmoe_clip.config import load_config

from dvc_util import compose_params, dvc_stages
from snakemake_util import REPO, outputs_by_rule, shell_commands

# setup of config/dvc/setup/ -> the Snakemake config it mirrors
SETUPS = {"paper": "config/config.yaml", "demo": "config/demo.yaml"}

# The one deliberate difference in outputs: DVC tracks (caches, pushes) a whole raw dataset folder,
# while Snakemake's download job finishes with the folder's download record (hand-placed files may
# already sit in the folder before the job runs).
RAW_RECORD = re.compile(r"^(\S+/raw/\w+)/download\.json$")
# DVC's `raw` stage runs whichever command the data source names; Snakemake has a rule for each, and
# one `train` rule where DVC has a stage per kind of method. Evaluation: Snakemake's evaluate_{target}_{digest}
# rules and DVC's evaluate_* stages, each side as a whole.
DVC_GROUPS = {"raw": ("download", "synth"), "train_baseline": ("train",)}
EVALUATE = re.compile(r"^evaluate_")
# The options of one model in an evaluate command; --checkpoint or --config starts a model.
MODEL_STARTS = ("--checkpoint", "--config")
# DVC's first stage validates the composed params, which Snakemake does when it builds its DAG.
DVC_ONLY = {"check_params"}
# The placeholder for a cluster launcher in DVC's GPU stages; empty unless set (README, "Cluster").
LAUNCHER = "$WMOE_DVC_LAUNCHER"


@pytest.fixture(scope="module", params=sorted(SETUPS))
def setup(request, tmp_path_factory):
    """(Snakemake args, DVC stages, composed params) of one setup."""
    params = compose_params(f"setup={request.param}")
    stages = dvc_stages(params, tmp_path_factory.mktemp(request.param))
    return ("--configfile", SETUPS[request.param]), stages, params


def dvc_outputs(stages) -> dict[str, set[str]]:
    """Snakemake rule -> outputs (outs, metrics, plots) of the DVC stages that stand for it."""
    out: dict[str, set[str]] = {}
    for stage in stages:
        group = stage.name.split("@")[0]
        if group in DVC_ONLY:
            continue
        out.setdefault("evaluate" if EVALUATE.match(group) else group, set()).update(o.def_path for o in stage.outs)
    for group, rules in DVC_GROUPS.items():
        if group in out:
            out.setdefault("|".join(rules), set()).update(out.pop(group))
    return out


def snakemake_outputs(args) -> dict[str, set[str]]:
    rules = outputs_by_rule(*args)
    rules.pop("default", None)
    for name in [r for r in rules if EVALUATE.match(r)]:
        rules.setdefault("evaluate", set()).update(rules.pop(name))
    for group, names in DVC_GROUPS.items():
        merged = set().union(*(rules.pop(name, set()) for name in names))
        if merged:
            rules.setdefault("|".join(names), set()).update(merged)
    key = "|".join(DVC_GROUPS["raw"])
    rules[key] = {RAW_RECORD.sub(r"\1", p) for p in rules[key]}
    return rules


def argv(command: str) -> tuple[str, ...]:
    """A job's command as words, environment assignments included, without Snakemake's log redirection
    or DVC's launcher placeholder.

    DVC runs from the repository root, where its `$(pwd)` is what Snakemake's absolute paths expand to.
    """
    words = [w for w in shlex.split(command.replace("$(pwd)", str(REPO))) if w != LAUNCHER]
    return tuple(words[: words.index(">")] if ">" in words else words)


def is_run_config(words: tuple[str, ...]) -> bool:
    return words[:2] == ("wmoe-clip", "run-config")


def per_model(words: tuple[str, ...]) -> list[tuple[str, ...]]:
    """An evaluate command as one command per model: its options before the first model, then that
    model's; any other command as itself."""
    if "evaluate" not in words or not any(w in MODEL_STARTS for w in words):
        return [words]
    starts = [i for i, w in enumerate(words) if w in MODEL_STARTS] + [len(words)]
    return [words[: starts[0]] + words[a:b] for a, b in zip(starts, starts[1:])]


def test_dvc_and_snakemake_name_the_same_outputs_stage_by_stage(setup):
    args, stages, _ = setup
    assert dvc_outputs(stages) == snakemake_outputs(args)


def test_paper_setup_has_the_whole_protocol():
    smk = set().union(*snakemake_outputs(("--configfile", SETUPS["paper"])).values())
    assert len(smk) == 14 + 2 * 14 + 1 + 1 + 1 + 3 * 10 + 2 * 22 + 3


def test_dvc_and_snakemake_run_the_same_commands(setup):
    # Word for word, an evaluate job's command taken model by model, but for the run configs (next test).
    args, stages, params = setup
    smk = sorted(c for command in shell_commands(*args) for c in per_model(argv(command)))
    dvc = sorted(argv(stage.cmd) for stage in stages if stage.name not in DVC_ONLY)
    assert all(len(per_model(c)) == 1 for c in dvc)
    assert len(smk) == len(dvc) and len(smk) >= 14 + 14 + 1 + 1 + 10 + 22 + 1
    assert sum(map(is_run_config, smk)) == sum(map(is_run_config, dvc)) == len(params["run_configs"])
    smk, dvc = [c for c in smk if not is_run_config(c)], [c for c in dvc if not is_run_config(c)]
    assert [c for c in dvc if c not in smk] == [] and [c for c in smk if c not in dvc] == []


def _out(words: tuple[str, ...]) -> str:
    return words[words.index("--out") + 1]


def test_both_run_configs_resolve_to_the_same_config(setup, tmp_path):
    # The commands that differ in form: Snakemake passes its config's overrides as --set, DVC points
    # --overrides at params.yaml (so `dvc exp run -S run_config.set.train.lr=...` works). Both
    # commands of each method are run as they stand and must write the same run config.
    args, stages, params = setup
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    smk = {_out(argv(c)): argv(c) for c in shell_commands(*args) if is_run_config(argv(c))}
    dvc = {_out(argv(s.cmd)): argv(s.cmd) for s in stages if is_run_config(argv(s.cmd))}
    assert sorted(smk) == sorted(dvc)
    for path in smk:
        resolved = []
        for command in (smk[path], dvc[path]):
            words = list(command[1:])
            out = tmp_path / f"run_config{len(resolved)}.yaml"
            words[words.index("--out") + 1] = str(out)
            words = [w.replace("params.yaml:", f"{tmp_path}/params.yaml:") for w in words]
            assert main(words) == 0
            resolved.append(load_config(out).to_dict())
        assert resolved[0] == resolved[1], path
        assert resolved[0]["method"] == path.rsplit("/", 1)[-1].removesuffix(".yaml")


def test_committed_params_are_the_default_composition():
    # Plain `dvc repro` in a fresh clone runs what `dvc exp run` would: the paper setup.
    assert yaml.safe_load((REPO / "params.yaml").read_text()) == compose_params()
    assert compose_params() == compose_params("setup=paper")


def test_dvc_setups_mirror_the_workflow_configs(setup):
    args, _, params = setup
    config = yaml.safe_load((REPO / args[1]).read_text())
    assert params["data"]["source"] == config["data_source"]
    assert params["run_configs"]["wmoe_clip"]["base"] == config["model_config"]
    baselines = config.get("methods", {}).get("baselines", [])
    assert sorted(params["trained_baselines"] + params["untrained_baselines"]) == sorted(baselines)
    assert sorted(params["run_configs"]) == sorted(["wmoe_clip", *baselines])
    assert params["mlflow"]["experiment"] == config["mlflow"]["experiment"]
    assert params["seeds"] == config["seeds"]
    assert params["custom_targets"] == config.get("custom_targets", {})
