"""The workflow through the shipped SLURM profile on a real cluster, with nothing but site values set
(WMOE_SLURM_*): every training and evaluation goes through sbatch (and shows up in Slurm's job
history as that rule), everything else runs on the login node, the reports are written; then a
changed training setting reruns exactly the trainings, evaluations and report, again on the cluster."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import slurm_history
from snakemake_util import REPO, by_kind, job_counts, rule_kind, slurm_profile, snakemake

pytestmark = pytest.mark.slow

# Site values for the test node (2 CPUs, no GPU): one CPU and 2 GB per job, short limits.
SITE = {"GPUS": "0", "TRAIN_CPUS": "1", "EVALUATE_CPUS": "1", "TRAIN_MEM_MB": "2000", "EVALUATE_MEM_MB": "2000",
        "TRAIN_RUNTIME": "15", "EVALUATE_RUNTIME": "15"}
SUBMITTED = re.compile(r"^Job \S+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", re.M)
HEADER = re.compile(r"^\s*(localrule|rule) (\w+):$", re.M)


def _config(tmp: Path, **train: float) -> Path:
    """Two datasets, one variant: each trained on one and evaluated on the other, one epoch."""
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    overrides = {**config["overrides"], "train.epochs": 1, **{f"train.{k}": v for k, v in train.items()}}
    config.update(
        run="slurm", paths={k: str(tmp / k) for k in ("resources", "results", "reports", "logs")}, synth_size=2,
        overrides=overrides, targets={"visa": ["mvtec"], "mvtec": ["visa"]}, variants=["full"], ablation_targets={},
        custom_targets={},
        mlflow={"enabled": True, "tracking_uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "slurm"})
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(config: Path, partition: str) -> str:
    site = {**SITE, "PARTITION": partition}
    env = {f"WMOE_SLURM_{k}": v for k, v in site.items()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    old = dict(os.environ)
    os.environ.update(env)
    try:
        proc = snakemake("--profile", "profiles/slurm", "--workflow-profile", "none", "--configfile", str(config))
    finally:
        os.environ.clear()
        os.environ.update(old)
    return proc.stdout + proc.stderr


def _jobs(log: str) -> tuple[list[str], list[str]]:
    """(rules of the jobs run as cluster jobs, rules of the jobs run locally), one entry per job, every
    evaluate job as `evaluate`."""
    headers = [(kind, rule_kind(r)) for kind, r in HEADER.findall(log)]
    return [r for kind, r in headers if kind == "rule"], [r for kind, r in headers if kind == "localrule"]


def _check_submissions(log: str, cluster_rules: dict[str, int], group: int) -> list[dict[str, str]]:
    """Every job of a cluster rule went through sbatch and finished there as that rule."""
    submitted = SUBMITTED.findall(log)
    groups = math.ceil(cluster_rules.pop("evaluate", 0) / group)
    assert len(submitted) == sum(cluster_rules.values()) + groups
    history = {job["id"]: job for job in slurm_history(jobs=",".join(i for i, _ in submitted))}
    assert sorted(history) == sorted(i for i, _ in submitted)
    jobs = [history[i] for i, _ in submitted]
    assert all(job["state"] == "COMPLETED" for job in jobs), jobs
    comments = [job["comment"] for job in jobs]
    for rule, n in cluster_rules.items():
        assert sum(c.startswith(f"rule_{rule}_") for c in comments) == n, comments
    assert sum("evaluate" in c for c in comments) == groups, comments
    return jobs


def test_workflow_runs_through_the_slurm_profile_with_site_values_only(slurm_partition, tmp_path):
    config = _config(tmp_path)
    counts = by_kind(job_counts("--configfile", str(config)))
    # The rules the profile sizes are the cluster's; every other job runs on the login node.
    sized = set(slurm_profile(**SITE)["set-resources"])
    group = slurm_profile(**SITE)["group-components"]["evaluate"]

    log = _run(config, slurm_partition)
    remote, local = _jobs(log)
    assert sorted(remote) == sorted(r for r, n in counts.items() if r in sized for _ in range(n))
    assert sorted(local) == sorted(r for r, n in counts.items() if r not in sized for _ in range(n))
    jobs = _check_submissions(log, {r: counts[r] for r in sized}, group)
    # The site values reached sbatch: one CPU and 2000 MB per training.
    trains = [j for j in jobs if j["comment"].startswith("rule_train_")]
    assert {(j["cpus"], j["memory"]) for j in trains} == {("1", "2000M")}
    reports = tmp_path / "reports"
    assert sorted(p.name for p in reports.iterdir()) == ["index.html", "table1.tex", "table2.tex"]

    # One training setting changed: run configs, trainings, evaluations and report run again and
    # succeed (no training state left behind trips them); the data jobs do not.
    config = _config(tmp_path, lr=0.002)
    log = _run(config, slurm_partition)
    remote, local = _jobs(log)
    # Every method's run config carries the workflow's overrides, so each is rewritten.
    assert sorted(local) == sorted(["default", "report"] + ["run_config"] * counts["run_config"])
    assert sorted(remote) == sorted(r for r, n in counts.items() if r in sized for _ in range(n))
    _check_submissions(log, {r: counts[r] for r in sized}, group)
    for source in ("visa", "mvtec"):
        history = json.loads((tmp_path / f"results/train/{source}/full/seed0/history.json").read_text())
        assert [h["lr"] for h in history] == [0.002]
        assert not (tmp_path / f"results/train/{source}/full/seed0/state").exists()
