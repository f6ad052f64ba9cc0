"""dvc.yaml and the Snakemake paper DAG name the same outputs, so the two descriptions cannot drift."""

from __future__ import annotations

import re

import yaml

from snakemake_util import REPO, outputs_by_rule

# The one deliberate difference: DVC tracks (caches, pushes) a whole raw dataset folder, while
# Snakemake's download job finishes with the folder's download record (hand-placed files may
# already sit in the folder before the job runs).
RAW_RECORD = re.compile(r"^(resources/raw/\w+)/download\.json$")


def dvc_outputs() -> dict[str, set[str]]:
    """stage group (name before '@') -> outputs (outs, metrics, plots) of the expanded dvc.yaml."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        stages = repo.index.stages
        out: dict[str, set[str]] = {}
        for stage in stages:
            group = stage.name.split("@")[0]
            out.setdefault(group, set()).update(o.def_path for o in stage.outs)
    return out


def snakemake_outputs() -> dict[str, set[str]]:
    rules = outputs_by_rule()
    rules.pop("default", None)
    rules["download"] = {RAW_RECORD.sub(r"\1", p) for p in rules["download"]}
    return rules


def test_dvc_and_snakemake_name_the_same_outputs():
    dvc = set().union(*dvc_outputs().values())
    smk = set().union(*snakemake_outputs().values())
    assert sorted(dvc - smk) == [] and sorted(smk - dvc) == []
    assert len(smk) == 14 + 2 * 14 + 1 + 1 + 1 + 3 * 10 + 2 * 22 + 3


def test_stages_match_rules_step_by_step():
    dvc = dvc_outputs()
    dvc["evaluate"] = dvc.pop("evaluate_main") | dvc.pop("evaluate_ablation")
    assert dvc == snakemake_outputs()


def test_dvc_params_mirror_the_paper_config():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["run_config"]["base"] == config["model_config"]
    assert params["mlflow"]["experiment"] == config["mlflow"]["experiment"]
    assert params["seeds"] == config["seeds"]
