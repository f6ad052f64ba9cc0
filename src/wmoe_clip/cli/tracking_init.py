"""``wmoe-clip tracking-init``: create the MLflow store and experiment ahead of the jobs.

Jobs create a missing store themselves, safely under a lock beside the SQLite file, so this is an
optimisation (docs/PIPELINE.md §3.2's race cannot lose runs); the workflow runs it first and makes every
tracked job depend on its marker.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tracking-init",
        help="create the MLflow tracking store and experiment ahead of the jobs (optional: jobs create it too)",
        description="Create (or upgrade) the MLflow store and the experiment. Default store: "
        "$MLFLOW_TRACKING_URI, else sqlite:////<current folder>/mlflow.db; default experiment: "
        "$MLFLOW_EXPERIMENT_NAME, else wmoe-clip.",
    )
    p.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI or the SQLite file mlflow.db here)")
    p.add_argument("--experiment", help="experiment name (default: $MLFLOW_EXPERIMENT_NAME or wmoe-clip)")
    p.add_argument("--marker", help="JSON file to write on success (URI and experiment id), for the workflow")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.tracking import default_tracking_uri, init_store, store_failure
    from ..errors import WMoEError
    from ..io import write_json

    uri = args.uri or default_tracking_uri()
    try:
        info = init_store(uri, args.experiment)
    except Exception as exc:  # noqa: BLE001 - any store failure becomes a one-line, actionable error
        raise WMoEError(store_failure(uri, exc)) from None
    if args.marker:
        write_json(args.marker, info)
    print(f"MLflow experiment {info['experiment']!r} (id {info['experiment_id']}) ready at {info['tracking_uri']}")
    return 0
