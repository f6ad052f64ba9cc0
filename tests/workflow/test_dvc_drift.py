"""dvc.yaml and the Snakemake DAG name the same outputs and run the same commands, for the paper and
the demo alike (each DVC setup of config/dvc/ against the workflow config it mirrors), and the DVC
setups are what `wmoe-clip dvc-params` writes from those workflow configs, so the two descriptions
cannot drift. An evaluate job is one job on both sides: one per target and backbone configuration."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from wmoe_clip.cli import main
from wmoe_clip.config import load_config
from wmoe_clip.dvc_params import Generated, stale

from dvc_util import compose_params, dvc_stages
from snakemake_util import REPO, outputs_by_rule, shell_commands

# setup of config/dvc/setup/ -> the Snakemake config it mirrors
SETUPS = {"paper": "config/config.yaml", "demo": "config/demo.yaml"}

# The one deliberate difference in outputs: DVC tracks (caches, pushes) a whole raw dataset folder,
# while Snakemake's download job finishes with the folder's download record (hand-placed files may
# already sit in the folder before the job runs).
RAW_RECORD = re.compile(r"^(\S+/raw/\w+)/download\.json$")
# DVC's `raw` stage runs whichever command the data source names; Snakemake has a rule for each.
# Evaluation: Snakemake's evaluate_{target}_{digest} rules and DVC's evaluate_n<K> stages, each side
# as a whole.
DVC_GROUPS = {"raw": ("download", "synth")}
EVALUATE = re.compile(r"^evaluate_")
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


def test_dvc_and_snakemake_name_the_same_outputs_stage_by_stage(setup):
    args, stages, _ = setup
    assert dvc_outputs(stages) == snakemake_outputs(args)


def test_paper_setup_has_the_whole_protocol():
    smk = set().union(*snakemake_outputs(("--configfile", SETUPS["paper"])).values())
    # Raw and prepared data, the weights of ViT-L-14-336 and of WinCLIP's ViT-B-16-plus-240, tracking, four
    # run configs (WMoE-CLIP and its three controls), 12 trainings (10 + AnomalyCLIP on each source), 64
    # evaluations (22 + 14 each of AnomalyCLIP, CLIP and WinCLIP), the report.
    assert len(smk) == 14 + 2 * 14 + 2 + 1 + 4 + 3 * 12 + 2 * 64 + 3


def test_dvc_and_snakemake_run_the_same_commands(setup):
    # Word for word, each evaluate job's command with all its models, but for the run configs (next test).
    args, stages, params = setup
    smk = sorted(argv(command) for command in shell_commands(*args))
    dvc = sorted(argv(stage.cmd) for stage in stages if stage.name not in DVC_ONLY)
    assert len(smk) == len(dvc) and len(smk) >= 14 + 14 + 1 + 1 + 10 + 14 + 1
    assert sum(map(is_run_config, smk)) == sum(map(is_run_config, dvc)) == len(params["run_configs"])
    smk, dvc = [c for c in smk if not is_run_config(c)], [c for c in dvc if not is_run_config(c)]
    assert [c for c in dvc if c not in smk] == [] and [c for c in smk if c not in dvc] == []


def test_an_evaluate_stage_is_a_snakemake_evaluate_job(setup):
    args, stages, _ = setup
    dvc = {frozenset(o.def_path for o in s.outs) for s in stages if EVALUATE.match(s.name)}
    smk = {frozenset(outs) for rule, outs in outputs_by_rule(*args).items() if EVALUATE.match(rule)}
    # Paper: three encoder passes per target (AnomalyCLIP's and WinCLIP's backbone configurations are their
    # own); demo: two (AnomalyCLIP shares the tiny model's there), and a custom target.
    assert dvc == smk and len(dvc) in (3 * 14, 2 * 14 + 1)


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


def test_committed_dvc_files_are_what_the_workflow_configs_make(monkeypatch, capsys):
    # Fails when a workflow config (or the plan) changed without `wmoe-clip dvc-params` being rerun.
    monkeypatch.chdir(REPO)
    assert main(["dvc-params", "--check"]) == 0, capsys.readouterr().err


def test_stale_names_each_file_that_differs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "same.yaml").write_text("a: 1\n")
    (tmp_path / "old.yaml").write_text("a: 1\n")
    generated = Generated({"same.yaml": "a: 1\n", "old.yaml": "a: 2\n", "missing.yaml": "a: 3\n"})
    assert stale(generated) == ["old.yaml", "missing.yaml"]


def test_dvc_params_outside_the_repository_root_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["dvc-params", "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config/dvc/setups.yaml not found" in err
