"""MLflow tracking that never fails a job (docs/PIPELINE.md §3).

* Store: ``MLFLOW_TRACKING_URI`` if set (e.g. a tracking server on a cluster), else a SQLite file
  ``mlflow.db`` in the working directory, as an absolute URI so jobs started elsewhere share it.
* Experiment: ``MLFLOW_EXPERIMENT_NAME``, default ``wmoe-clip``. The first use by a process creates
  the store's schema and the experiment if missing, holding an exclusive lock on ``mlflow.db.lock``
  beside a SQLite file, so any number of jobs started at once on a fresh store all get their runs
  (docs/PIPELINE.md §3.2's race). ``wmoe-clip tracking-init`` does the same ahead of time: an optimisation.
* One run per training and per evaluation (:meth:`Tracker.run`), closed FINISHED, or FAILED on an error
  and KILLED on an interruption; an evaluation run carries its training run as parent, and a resumed
  training reopens the run of its interrupted part.
* Every call goes through :meth:`Tracker._call`: a failure gives one warning and switches tracking
  off for the rest of the job, whose files are still written; :meth:`Tracker.status` goes into the
  job's output JSON (``tracking.error``) and the command repeats the failure on stderr at its end, so
  a run missing from MLflow is never a silent loss. SQLite lock contention is retried.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..io import file_lock

DEFAULT_EXPERIMENT = "wmoe-clip"
# MLflow's own HTTP defaults (7 retries with back-off, 120 s timeout) would stall a job for minutes
# when a server is down; these bound it to seconds. Users may still set the variables themselves.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
_LOCK_RETRIES = 8
# MLflow limits: a param value holds at most 6000 characters, a batch at most 100 params / 1000 metrics.
_PARAM_CHARS = 6000
_PARAM_BATCH = 100
_METRIC_BATCH = 1000


class TrackingWarning(UserWarning):
    """Tracking failed; the job goes on without it."""


def _prepare_environment() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:////<cwd>/mlflow.db`` (absolute)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return "sqlite:///" + str(Path.cwd().resolve() / "mlflow.db")


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go to ``mlartifacts/`` beside the database file; a server decides itself."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts")
    return None


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock on ``<db>.lock`` beside a SQLite store (nothing for a server, which serialises itself)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri[len("sqlite:///"):])
    with file_lock(db.with_name(db.name + ".lock")):
        yield


def ensure_experiment(uri: str, name: str) -> tuple[Any, str]:
    """A client of the store and the id of experiment ``name``, creating the store's schema and the
    experiment if missing.

    Safe for any number of concurrent processes: on a SQLite store the whole check-and-create runs
    under the store's lock; on a server, losing the creation race to another job is not an error.
    """
    _prepare_environment()
    from mlflow.tracking import MlflowClient

    with _store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(name)  # a SQLite store creates or upgrades its schema here
        if exp is not None:
            return client, exp.experiment_id
        try:
            return client, client.create_experiment(name, artifact_location=_artifact_location(uri))
        except Exception:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return client, exp.experiment_id


def init_store(uri: str | None = None, experiment: str | None = None) -> dict[str, str]:
    """Create the store's schema and the experiment ahead of the jobs; safe to call again. Raises on failure."""
    uri = uri or default_tracking_uri()
    name = experiment or experiment_name()
    _, exp_id = ensure_experiment(uri, name)
    return {"tracking_uri": uri, "experiment": name, "experiment_id": exp_id}


# What SQLite says of a file that is not (or no longer) a database.
_CORRUPT_SQLITE = ("file is not a database", "database disk image is malformed")


def store_failure(uri: str, exc: BaseException) -> str:
    """One line for a store that cannot be opened: the driver's first line (not SQLAlchemy's echo of
    its SQL), and for a corrupt SQLite file what to do with it."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's exception
    detail = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
    if uri.startswith("sqlite:///") and any(s in str(exc) for s in _CORRUPT_SQLITE):
        db = uri[len("sqlite:///"):]
        return (f"the MLflow store {db} is not a readable SQLite database ({detail}): move the file aside "
                f"(e.g. mv {db} {db}.corrupt) to start a new store there, or point --uri or "
                "$MLFLOW_TRACKING_URI at another store")
    return f"cannot initialise the MLflow store {uri}: {type(cause).__name__}: {detail}; check --uri"


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _is_lock_error(exc: Exception) -> bool:
    return "database is locked" in str(exc) or "database is busy" in str(exc)


class Tracker:
    """One MLflow run, or nothing when tracking is off or has failed."""

    def __init__(self, enabled: bool = True, uri: str | None = None, experiment: str | None = None):
        self.enabled = enabled
        self.uri = uri or default_tracking_uri()
        self.experiment = experiment or experiment_name()
        self.run_id: str | None = None
        # The first failure, as one line; None while every call succeeded (or tracking is off).
        self.error: str | None = None
        self._client = None

    @property
    def active(self) -> bool:
        return self.enabled and self.run_id is not None

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        if not self.enabled:
            return None
        for attempt in range(_LOCK_RETRIES):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - tracking must never fail the job
                if _is_lock_error(exc) and attempt + 1 < _LOCK_RETRIES:
                    time.sleep(0.2 * 2**attempt)
                    continue
                self.error = (f"MLflow tracking ({self.uri}) failed while trying to {what}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                warnings.warn(
                    f"{self.error}; tracking is off for the rest of this job, its output files are still written",
                    TrackingWarning,
                    stacklevel=3,
                )
                self.enabled = False
                return None
        return None

    def start(
        self,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        resume_run_id: str | None = None,
    ) -> str | None:
        """Open a run (or reopen ``resume_run_id``); returns its id, or None when tracking is off."""
        if not self.enabled:
            return None
        _prepare_environment()

        def start() -> str:
            client, exp_id = ensure_experiment(self.uri, self.experiment)
            if resume_run_id:
                client.update_run(resume_run_id, status="RUNNING")
                self._client = client
                return resume_run_id
            all_tags = {
                # MLflow would name the script path (a temporary copy under Snakemake); name the command.
                "mlflow.source.name": " ".join(["wmoe-clip", *sys.argv[1:2]]),
                "mlflow.source.type": "LOCAL",
                **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {}),
                **{k: str(v) for k, v in (tags or {}).items()},
            }
            run = client.create_run(exp_id, tags=all_tags, run_name=run_name)
            self._client = client
            return run.info.run_id

        self.run_id = self._call("start a run", start)
        return self.run_id

    def status(self) -> dict[str, Any]:
        """What the job's output JSON records about tracking: asked for, where, and the failure if any."""
        requested = self.enabled or self.error is not None
        return {"requested": requested, "uri": self.uri if requested else None, "error": self.error}

    def report_failure(self, command: str, record: str) -> None:
        """Repeat a tracking failure at the end of a job on stderr, after its progress output."""
        if self.error:
            print(f"wmoe-clip {command}: warning: this run is missing from (or incomplete in) MLflow: "
                  f"{self.error}. Its files are complete; {record} records the error.", file=sys.stderr)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.active:
            return
        from mlflow.entities import Param

        flat = [Param(k, str(v)[:_PARAM_CHARS]) for k, v in _flatten(params).items()]
        for i in range(0, len(flat), _PARAM_BATCH):
            chunk = flat[i : i + _PARAM_BATCH]
            self._call("log parameters", lambda: self._client.log_batch(self.run_id, params=chunk))

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Log finite numbers (nested keys joined with '.'); nulls and non-numbers are skipped."""
        if not self.active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in _flatten(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        for i in range(0, len(items), _METRIC_BATCH):
            chunk = items[i : i + _METRIC_BATCH]
            self._call("log metrics", lambda: self._client.log_batch(self.run_id, metrics=chunk))

    def log_artifact(self, path: str | os.PathLike) -> None:
        if self.active and Path(path).exists():
            self._call(f"log artifact {path}", lambda: self._client.log_artifact(self.run_id, str(path)))

    def end(self, status: str = "FINISHED") -> None:
        if self.active:
            self._call("end the run", lambda: self._client.set_terminated(self.run_id, status=status))

    @contextlib.contextmanager
    def run(self, run_name: str, tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None,
            resume_run_id: str | None = None) -> Iterator[str | None]:
        """:meth:`start` a run for the body; it ends FINISHED, or KILLED (interrupted) / FAILED on an error."""
        run_id = self.start(run_name, tags, parent_run_id, resume_run_id)
        try:
            yield run_id
        except BaseException as exc:
            self.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise
        self.end()
