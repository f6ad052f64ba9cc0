"""DVC on a cluster: `dvc repro` stays on the login node and $WMOE_DVC_LAUNCHER (README, "Cluster")
sends the training command to a compute node through srun, without making it another stage."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from conftest import slurm_history
from dvc_util import compose_params, dvc, fresh_clone, stages_run

pytestmark = pytest.mark.slow


def test_training_stage_runs_as_a_slurm_job(slurm_partition, tmp_path):
    repo = fresh_clone(tmp_path / "clone")
    params = compose_params("setup=subset", root=repo)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    name = f"wmoe-dvc-{uuid.uuid4().hex[:8]}"
    launcher = f"srun --partition={slurm_partition} --ntasks=1 --cpus-per-task=1 --mem=2000 --time=15 --job-name={name}"
    train = f"train@{next(iter(params['trainings']))}"

    ran = stages_run(dvc(repo, "repro", train, env={"WMOE_DVC_LAUNCHER": launcher}))
    assert train in ran and not any(s.startswith(("evaluate", "report")) for s in ran)
    jobs = slurm_history(name=name)
    assert [job["state"] for job in jobs] == ["COMPLETED"] and jobs[0]["memory"] == "2000M"
    run = json.loads((repo / params["paths"]["results"] / "train/visa/full/seed0/run.json").read_text())
    assert run["source"] == "visa" and run["epochs"] == 1

    # Where a stage ran is not part of it: without the launcher the training is up to date.
    assert json.loads(dvc(repo, "status", train, "--json")) == {}
    assert stages_run(dvc(repo, "repro", train)) == set()
