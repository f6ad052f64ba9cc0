"""The Snakemake DAG of the paper and demo configs: exactly the protocol's jobs, and a clean lint."""

from __future__ import annotations

import re
import shlex
import shutil

import pytest
import yaml

from wmoe_clip.cli import main

from snakemake_util import REPO, job_counts, outputs_by_rule, shell_commands, snakemake

DATASETS = ["mvtec", "visa", "btad", "ksdd2", "dagm", "dtd", "headct", "brainmri", "br35h", "isic",
            "colondb", "clinicdb", "endo", "kvasir"]
VARIANTS = ["base", "ctds", "ctds_wcma", "ctds_samoe", "full"]
# The paper's protocol, written out independently of the config: VisA-trained full model on the
# 13 others, MVTec-trained full model on VisA, and every variant on the MVTec-AD and VisA cells.
EXPECTED_TRAIN = {(s, v) for s in ("visa", "mvtec") for v in VARIANTS}
EXPECTED_EVAL = (
    {("visa", t, "full") for t in DATASETS if t != "visa"}
    | {("mvtec", "visa", "full")}
    | {("visa", "mvtec", v) for v in VARIANTS}
    | {("mvtec", "visa", v) for v in VARIANTS}
)
TRAIN = re.compile(r"^results/train/(\w+)/(\w+)/seed(\d+)/model\.pt$")
EVAL = re.compile(r"^results/eval/(\w+)/(\w+)/(\w+)/seed(\d+)\.json$")


def test_expected_protocol_size():
    assert len(EXPECTED_TRAIN) == 10 and len(EXPECTED_EVAL) == 22


def test_paper_dry_run_lists_exactly_the_protocol():
    counts = job_counts()
    assert counts == {
        "download": 14, "prepare": 14, "download_weights": 1, "tracking_init": 1, "run_config": 1,
        "train": 10, "evaluate": 22, "report": 1, "default": 1,
    }
    rules = outputs_by_rule()
    trained = {TRAIN.match(p).groups() for p in rules["train"] if p.endswith("model.pt")}
    assert trained == {(s, v, "0") for s, v in EXPECTED_TRAIN}
    evaluated = {EVAL.match(p).groups() for p in rules["evaluate"] if p.endswith(".json")}
    assert evaluated == {(*cell, "0") for cell in EXPECTED_EVAL}
    assert rules["download"] == {f"resources/raw/{d}/download.json" for d in DATASETS}
    assert rules["report"] == {f"reports/paper/{f}" for f in ("index.html", "table1.tex", "table2.tex")}


def test_plain_dry_run_has_work_to_do():
    # The root Snakefile must carry the default target itself (PIPELINE.md §1.3).
    out = snakemake("--dry-run", "--forceall").stdout
    assert "Nothing to be done" not in out and "report" in out


def test_demo_dag_is_the_same_over_synthetic_data():
    counts = job_counts("--configfile", "config/demo.yaml")
    # The demo adds one custom target, a synthetic folder: every trained model is evaluated on it too.
    assert counts == {
        "synth": 14, "synth_custom": 1, "prepare": 14, "prepare_custom": 1, "tracking_init": 1, "run_config": 1,
        "train": 10, "evaluate": 22 + 10, "report": 1, "default": 1,
    }
    rules = outputs_by_rule("--configfile", "config/demo.yaml")
    assert all(p.startswith("results/demo/") for p in rules["train"] | rules["evaluate"])
    assert rules["synth_custom"] == {"resources/demo/raw/custom/parts"}
    on_parts = {p for p in rules["evaluate"] if p.endswith(".json") and "/parts/" in p}
    assert on_parts == {f"results/demo/eval/{s}/parts/{v}/seed0.json" for s, v in EXPECTED_TRAIN}
    assert rules["report"] == {f"reports/demo/{f}" for f in ("index.html", "table1.tex", "table2.tex")}


def test_seeds_multiply_trainings_and_evaluations():
    counts = job_counts("--config", "seeds=[0,1,2]")
    assert (counts["train"], counts["evaluate"], counts["prepare"]) == (30, 66, 14)


def test_paper_run_config_job_trains_from_the_downloaded_weights(tmp_path):
    # The job's own command, run as is: it must validate and point the model at the weights file.
    from wmoe_clip.config import load_config

    command = next(c for c in shell_commands() if c.startswith("wmoe-clip run-config "))
    words = shlex.split(command)
    words = words[1: words.index(">")]
    out = tmp_path / "run_config.yaml"
    words[words.index("--out") + 1] = str(out)
    assert main(words) == 0
    cfg = load_config(out)
    assert cfg.model.pretrained == "resources/weights/vit_l14_336_openai.pt"
    assert cfg.model.backbone == load_config("vit_l14_336").model.backbone


def test_minimal_config_gets_the_schema_defaults(tmp_path):
    # Only the required keys, in a folder without config/config.yaml: the rest comes from the schema.
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "paper_results.yaml", tmp_path / "config")
    minimal = tmp_path / "minimal.yaml"
    minimal.write_text(yaml.safe_dump({"run": "minimal", "sources": ["visa"], "targets": {"visa": ["mvtec"]}}))
    args = ("--snakefile", str(REPO / "Snakefile"), "--configfile", str(minimal))
    counts = job_counts(*args, cwd=tmp_path)
    assert counts == {"download": 2, "prepare": 2, "download_weights": 1, "tracking_init": 1, "run_config": 1,
                      "train": 1, "evaluate": 1, "report": 1, "default": 1}
    rules = outputs_by_rule(*args, cwd=tmp_path)
    assert rules["evaluate"] == {"results/eval/visa/mvtec/full/seed0.json", "results/eval/visa/mvtec/full/seed0.png"}
    assert rules["report"] == {f"reports/paper/{f}" for f in ("index.html", "table1.tex", "table2.tex")}
    assert rules["tracking_init"] == {"results/tracking/initialised.json"}


def test_config_is_validated():
    proc = snakemake("--dry-run", "--config", "data_source=ftp", check=False)
    assert proc.returncode != 0 and "data_source" in proc.stdout + proc.stderr
    # A custom target may not take a registry dataset's name.
    proc = snakemake("--dry-run", "--config", "custom_targets={mvtec: tests}", check=False)
    assert proc.returncode != 0 and "custom_targets" in proc.stdout + proc.stderr


@pytest.mark.parametrize("args", [(), ("--configfile", "config/demo.yaml")], ids=["paper", "demo"])
def test_lint_is_clean(args):
    proc = snakemake("--lint", *args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_profiles_name_only_real_rules_and_standard_resources():
    rules = set(job_counts()) | {"synth"}
    slurm = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert set(slurm["set-resources"]) <= rules and set(slurm["set-threads"]) <= rules
    standard = {"gpu", "gpu_model", "mem_mb", "runtime", "cpus_per_task", "slurm_partition", "slurm_account"}
    for resources in [slurm["default-resources"], *slurm["set-resources"].values()]:
        assert set(resources) <= standard
    default = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert default["resources"] == {"gpu": 1} and default["rerun-incomplete"] is True


def test_slurm_profile_is_valid_and_a_group_shares_one_gpu(tmp_path):
    slurm = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    # Grouped evaluations get no device of their own: one GPU per submission, not one per job, and
    # the limit is per submission ("local"), so it does not serialise the cluster.
    assert slurm["group-components"] and slurm["resources"] == {"gpu": 1}
    assert slurm["set-resource-scopes"] == {"gpu": "local"}
    # Every key is a valid flag in the documented invocation (the executor plugin is not installed
    # here, so the copy runs the dry run with the local executor).
    del slurm["executor"]
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "config.yaml").write_text(yaml.safe_dump(slurm))
    out = snakemake("--dry-run", "--profile", str(tmp_path / "slurm"), "--workflow-profile", "none").stdout
    assert "evaluate" in out

