"""Jobs started at once on a fresh MLflow store all get their runs, and a run that could not be
logged is never a silent loss.

No ``tracking-init`` first, as a user starting jobs by hand or on a cluster would: every process
reaches the store in the same instant (they wait on a start file after importing everything).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from mlflow.tracking import MlflowClient

from robustness_util import run_cli

N_PROCESSES = 4

JOB = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import mlflow.tracking  # imported before the start, so that the processes meet at the store
    from wmoe_clip.engine.tracking import Tracker

    name, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    ready.touch()
    while not go.exists():
        time.sleep(0.005)
    tracker = Tracker()
    with tracker.run(f"job {name}", {"job": name}) as run_id:
        tracker.log_params({"job": name})
        tracker.log_metrics({"loss": float(name)}, step=1)
    print(json.dumps({"run_id": run_id, "status": tracker.status()}))
    """
)


@pytest.mark.slow  # four Python processes importing MLflow
def test_concurrent_jobs_on_a_fresh_store_lose_no_run(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "concurrent")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", JOB, str(i), str(tmp_path / f"ready{i}"), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(N_PROCESSES)]
    deadline = time.monotonic() + 240
    while not all((tmp_path / f"ready{i}").exists() for i in range(N_PROCESSES)) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * N_PROCESSES, [err[-2000:] for _, err in outputs]
    records = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert [r["status"]["error"] for r in records] == [None] * N_PROCESSES, [err[-1500:] for _, err in outputs]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(r["run_id"] for r in records)
    assert sorted(r.data.params["job"] for r in runs) == [str(i) for i in range(N_PROCESSES)]
    assert all(r.info.status == "FINISHED" and r.data.metrics["loss"] == float(r.data.params["job"]) for r in runs)


def test_a_run_that_could_not_be_logged_is_reported_on_stderr_and_in_run_json(prepared, tmp_path, capsys,
                                                                              monkeypatch):
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    out = tmp_path / "train"
    with pytest.warns(UserWarning, match="tracking is off for the rest of this job"):
        rc, _, err = run_cli(capsys, "train", "--config", "tiny", "--source", "btad", "--data", prepared("btad"),
                             "--variant", "base", "--epochs", "1", "--out", out, "--quiet")
    assert rc == 0 and (out / "model.pt").is_file()
    error = json.loads((out / "run.json").read_text())["tracking"]["error"]
    assert error.startswith(f"MLflow tracking (http://127.0.0.1:{port}) failed while trying to start a run")
    assert (f"wmoe-clip train: warning: this run is missing from (or incomplete in) MLflow: {error}. Its files are "
            f"complete; {out}/run.json records the error.") in err
