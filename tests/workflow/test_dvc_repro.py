"""`dvc repro` for real, in a fresh clone, on a small setup of synthetic data: the whole pipeline from
data to report, a second run with nothing to do, a changed training parameter that reruns exactly the
stages it affects (and they succeed: no training state left behind trips them), and an experiment
with `dvc exp run -S`."""

from __future__ import annotations

import json

import pytest
import yaml

from dvc_util import compose_params, dvc, evaluate_stages, fresh_clone, stages_run

pytestmark = pytest.mark.slow


def _downstream_of_run_config(params: dict) -> set[str]:
    """The stages a training setting affects: the params check, the run config, every training and
    evaluation, the report."""
    trains = {f"train@{key}" for key in params["trainings"]}
    runs = {f"run_config@{m}" for m in params["run_configs"]}
    return runs | {"check_params", "report"} | trains | evaluate_stages(params)


def test_dvc_repro_runs_reruns_nothing_and_reruns_what_a_parameter_change_affects(tmp_path):
    repo = fresh_clone(tmp_path / "clone")
    params = compose_params("setup=subset", root=repo)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    results = repo / params["paths"]["results"]

    first = stages_run(dvc(repo, "repro"))
    expected = {f"{g}@{d}" for g in ("raw", "prepare") for d in params["datasets"]} | {"tracking_init"}
    assert first == expected | _downstream_of_run_config(params)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) == first
    reports = repo / params["paths"]["reports"]
    assert sorted(p.name for p in reports.iterdir()) == ["index.html", "table1.tex", "table2.tex"]
    evaluation = json.loads((results / "eval/visa/mvtec/full/seed0.json").read_text())
    assert evaluation["synthetic"] is True and evaluation["counts"]["n_classes"] == 15

    # Nothing changed: nothing runs, and DVC reports the workspace clean.
    again = dvc(repo, "repro")
    assert stages_run(again) == set() and "up to date" in again
    assert json.loads(dvc(repo, "status", "--json")) == {}

    # One training setting changed in params.yaml: the run config, the training, the evaluation and the
    # report rerun, the data stages do not, and the new training really used it.
    params["run_config"]["set"]["train"]["lr"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stages_run(dvc(repo, "repro")) == _downstream_of_run_config(params)
    history = json.loads((results / "train/visa/full/seed0/history.json").read_text())
    assert [h["lr"] for h in history] == [0.002]
    assert not (results / "train/visa/full/seed0/state").exists()
    assert json.loads(dvc(repo, "status", "--json")) == {}

    # An experiment: params composed again from config/dvc/ with one value set on the command line.
    out = dvc(repo, "exp", "run", "-S", "setup=subset", "-S", "run_config.set.train.epochs=2")
    assert stages_run(out) == _downstream_of_run_config(params)
    history = json.loads((results / "train/visa/full/seed0/history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history[0]["lr"] != 0.002
    assert yaml.safe_load((repo / "params.yaml").read_text())["run_config"]["set"]["train"]["epochs"] == 2
