"""dvc.yaml and the Snakemake paper DAG name the same outputs and run the same commands, so the two
descriptions cannot drift."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import yaml

from snakemake_util import REPO, outputs_by_rule, shell_commands

# The one deliberate difference: DVC tracks (caches, pushes) a whole raw dataset folder, while
# Snakemake's download job finishes with the folder's download record (hand-placed files may
# already sit in the folder before the job runs).
RAW_RECORD = re.compile(r"^(resources/raw/\w+)/download\.json$")


def dvc_stages(root=REPO):
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return list(repo.index.stages)


def dvc_outputs(root=REPO) -> dict[str, set[str]]:
    """stage group (name before '@') -> outputs (outs, metrics, plots) of the expanded dvc.yaml."""
    out: dict[str, set[str]] = {}
    for stage in dvc_stages(root):
        out.setdefault(stage.name.split("@")[0], set()).update(o.def_path for o in stage.outs)
    return out


def snakemake_outputs(*args: str) -> dict[str, set[str]]:
    rules = outputs_by_rule(*args)
    rules.pop("default", None)
    rules["download"] = {RAW_RECORD.sub(r"\1", p) for p in rules["download"]}
    return rules


def argv(command: str) -> tuple[str, ...]:
    """A job's command as words, environment assignments included, without Snakemake's log redirection.

    DVC runs from the repository root, where its `$(pwd)` is what Snakemake's absolute paths expand to.
    """
    words = shlex.split(command.replace("$(pwd)", str(REPO)))
    return tuple(words[: words.index(">")] if ">" in words else words)


def test_dvc_and_snakemake_name_the_same_outputs():
    dvc = set().union(*dvc_outputs().values())
    smk = set().union(*snakemake_outputs().values())
    assert sorted(dvc - smk) == [] and sorted(smk - dvc) == []
    assert len(smk) == 14 + 2 * 14 + 1 + 1 + 1 + 3 * 10 + 2 * 22 + 3


def test_stages_match_rules_step_by_step():
    dvc = dvc_outputs()
    dvc["evaluate"] = dvc.pop("evaluate_main") | dvc.pop("evaluate_ablation")
    assert dvc == snakemake_outputs()


def test_dvc_and_snakemake_run_the_same_commands():
    smk = sorted(argv(c) for c in shell_commands())
    dvc = sorted(argv(stage.cmd) for stage in dvc_stages())
    assert len(smk) == 14 + 14 + 1 + 1 + 1 + 10 + 22 + 1
    assert [c for c in dvc if c not in smk] == [] and [c for c in smk if c not in dvc] == []


def test_dvc_params_mirror_the_paper_config():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["run_config"]["base"] == config["model_config"]
    assert params["mlflow"]["experiment"] == config["mlflow"]["experiment"]
    assert params["seeds"] == config["seeds"]
    assert params["custom_targets"] == config["custom_targets"]


def test_custom_targets_give_the_same_stages_and_commands(tmp_path):
    """With a custom target in both configs, DVC and Snakemake prepare it and evaluate every model on it."""
    from dvc.repo import Repo

    custom = {"parts": "tests/workflow/data"}  # any existing folder: a dry run reads nothing
    Repo.init(str(tmp_path), no_scm=True)
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, "custom_targets": custom}))
    dvc = dvc_outputs(tmp_path)
    smk = snakemake_outputs("--config", f"custom_targets={json.dumps(custom)}")
    assert dvc.pop("prepare_custom") == smk.pop("prepare_custom") == {
        "resources/prepared/custom/parts/meta.json", "resources/prepared/custom/parts/prepare.json"}
    on_custom = {p for p in smk["evaluate"] if "/parts/" in p}
    assert dvc.pop("evaluate_custom") == on_custom and len(on_custom) == 2 * 10
    smk["evaluate"] -= on_custom
    dvc["evaluate"] = dvc.pop("evaluate_main") | dvc.pop("evaluate_ablation")
    assert dvc == smk
    commands = sorted(argv(c) for c in shell_commands("--config", f"custom_targets={json.dumps(custom)}"))
    dvc_commands = {argv(stage.cmd) for stage in dvc_stages(tmp_path)}
    custom_commands = [c for c in commands if "parts" in c]
    assert len(custom_commands) == 1 + 10 and set(custom_commands) <= dvc_commands
