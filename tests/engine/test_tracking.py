import json
import socket
import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from wmoe_clip.config import load_config
from wmoe_clip.engine.evaluate import evaluate
from wmoe_clip.engine.tracking import Tracker, TrackingWarning, default_tracking_uri, init_store
from wmoe_clip.engine.train import apply_overrides, train

N_PROCESSES, N_STEPS = 4, 25

WRITER = textwrap.dedent(
    """
    import sys
    from wmoe_clip.engine.tracking import Tracker
    t = Tracker()
    run = t.start(f"writer {sys.argv[1]}", tags={"writer": sys.argv[1]})
    t.log_params({"writer": sys.argv[1], "cfg": {"a": 1, "b": [1, 2]}})
    for step in range(%d):
        t.log_metrics({"loss": {"a": step * 1.0, "b": -step}, "writer": float(sys.argv[1])}, step=step)
    t.end()
    assert t.enabled, "tracking was switched off"
    print(run)
    """
    % N_STEPS
)


def test_parallel_processes_lose_nothing(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    init_store()  # once, before the jobs, as the workflow does
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(N_PROCESSES)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * N_PROCESSES, [o[1][-2000:] for o in outputs]
    client = MlflowClient(uri)
    for i, (out, _) in enumerate(outputs):
        run = client.get_run(out.split()[-1])
        assert run.info.status == "FINISHED" and run.data.params["writer"] == str(i)
        assert run.data.params["cfg.b"] == "[1, 2]"
        for name, expected in (("loss.a", [float(s) for s in range(N_STEPS)]),
                               ("loss.b", [-float(s) for s in range(N_STEPS)])):
            history = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)
            assert [m.value for m in history] == expected


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_warns_and_the_job_still_writes_its_outputs(make_prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    cfg = apply_overrides(load_config("tiny"), "base", epochs=1)
    with pytest.warns(TrackingWarning, match="tracking is off for the rest of this job"):
        run = train(cfg, "btad", make_prepared("btad", 4), tmp_path, tracker=Tracker(), progress=False)
    assert run["mlflow_run_id"] is None
    assert (tmp_path / "model.pt").is_file()
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["variant"] == "base"
    # The output says the run is missing from MLflow, and why.
    assert record["tracking"]["requested"] and "failed while trying to start a run" in record["tracking"]["error"]
    with pytest.warns(TrackingWarning, match="tracking is off for the rest of this job"):
        doc = evaluate(tmp_path / "model.pt", "btad", make_prepared("btad", 4), tmp_path / "eval.json",
                       tracker=Tracker(), progress=False, allow_same_source=True)
    assert doc["mlflow_run_id"] is None and doc["train_run_id"] is None
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["target"] == "btad"
    assert "failed while trying to start a run" in written["tracking"]["error"]


def test_default_store_is_an_absolute_sqlite_file_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert default_tracking_uri().startswith("sqlite:////")


def test_tracking_init_creates_the_store_and_experiment_once(tmp_path):
    from wmoe_clip.cli import main

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    for _ in range(2):
        assert main(["tracking-init", "--uri", uri, "--experiment", "exp", "--marker", str(tmp_path / "m.json")]) == 0
    marker = json.loads((tmp_path / "m.json").read_text())
    exp = MlflowClient(uri).get_experiment_by_name("exp")
    assert marker["experiment_id"] == exp.experiment_id
    assert exp.artifact_location.endswith("store/mlartifacts")
