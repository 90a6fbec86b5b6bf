"""MLflow: a run folder as an MLflow run (params = identity, metrics = headlines and CIs, tags, a ``headlines.json``
table, the score sheets under ``scores/`` and the report under ``report/``), a sweep as a run with a
``sweep_points.json`` table and its files under ``sweep/``. The store is a tracking URI (server, ``sqlite:///``, ...)
or a local folder (a file store; MLflow 3 keeps those in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``, which
is set for this process when the user names a folder). Only ``MlflowClient`` is used: no global active run.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.trackers.options import INSTALL, TrackerError, TrackerOptions, first_line
from minimonkey_eval.eval.trackers.records import KEY_TAG, TrackedRun, TrackedSweep

PARAM_MAX = 500          # MLflow's limit on a parameter value (characters)
BATCH_MAX = 100          # MLflow's limit on parameters per log_batch


def _client(uri: str):
    try:
        from mlflow.tracking import MlflowClient  # optional extra, seconds to import: only when --log-to names it
    except ImportError:
        raise TrackerError(f"--log-to mlflow needs mlflow (mlflow-skinny is enough): {INSTALL}") from None
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")   # the user chose a local folder (see above)
    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("mlflow").setLevel(logging.WARNING)      # its INFO lines (creating tables) only with -v
    return MlflowClient(tracking_uri=uri)


def _run_id(client, uri: str, experiment: str, key: str, name: str, tags: dict[str, str]) -> tuple[str, bool]:
    """(run id, created now): the run logged before under ``key``, else a new run in ``experiment`` (the experiment
    created when missing; with a ``sqlite:///`` store its artifacts go beside the database file)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        location = None
        if uri.startswith("sqlite:///"):
            location = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
        exp_id = client.create_experiment(experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    found = client.search_runs([exp_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=1)
    if found:
        return found[0].info.run_id, False
    return client.create_run(exp_id, run_name=name, tags=tags).info.run_id, True


def _call(uri: str, what: str, fn) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the store's library deprecation noise (SQLAlchemy, ...) is not ours
            return fn()
    except UserFacingError:
        raise
    except Exception as exc:  # MlflowException, connection errors, a read-only folder: one line naming the store
        raise TrackerError(f"mlflow ({uri}): cannot log {what} ({first_line(exc)}); check --mlflow-uri") from None


def log_run(rec: TrackedRun, opts: TrackerOptions, default_dir: Path) -> str:
    uri = opts.mlflow_store(default_dir)

    def log() -> str:
        client = _client(uri)                              # first: a missing mlflow is the install hint
        from mlflow.entities import Metric, Param, RunTag  # optional extra (see _client)

        run_id, created = _run_id(client, uri, opts.project, rec.key_hash, rec.name, rec.tags)
        logged = client.get_run(run_id).data.params        # a parameter is written once (same key, same value)
        params = [Param(k, v[:PARAM_MAX]) for k, v in rec.params.items() if k not in logged]
        stamp = int(rec.finished * 1000)
        metrics = [Metric(k, float(v), stamp, 0) for k, v in rec.metrics.items()]
        tags = [RunTag(k, v) for k, v in rec.tags.items()]
        for i in range(0, max(len(params), len(metrics), len(tags), 1), BATCH_MAX):
            client.log_batch(run_id, metrics=metrics[i:i + BATCH_MAX], params=params[i:i + BATCH_MAX],
                             tags=tags[i:i + BATCH_MAX])
        if created:   # log_table appends to a table already there: once, when the run is made
            client.log_table(run_id, rec.headline_table(), "headlines.json")
        for path in rec.sheets:
            client.log_artifact(run_id, str(path), "scores")
        for path in rec.report:
            client.log_artifact(run_id, str(path), "report")
        client.set_terminated(run_id)
        return f"mlflow: run {rec.name} in {uri} (experiment {opts.project}, run id {run_id})"

    return _call(uri, f"run {rec.name}", log)


def log_sweep(rec: TrackedSweep, opts: TrackerOptions, default_dir: Path) -> str:
    uri = opts.mlflow_store(default_dir)

    def log() -> str:
        client = _client(uri)
        tags = {KEY_TAG: rec.key_hash, "sweep_folder": rec.folder, "kind": "sweep"}
        run_id, created = _run_id(client, uri, opts.project, rec.key_hash, rec.name, tags)
        if created:   # see log_run: a sweep's content is its key, so an existing run already holds these points
            client.log_table(run_id, rec.points, "sweep_points.json")
        for path in rec.files:
            client.log_artifact(run_id, str(path), "sweep")
        client.set_terminated(run_id)
        return f"mlflow: sweep {rec.name} ({len(rec.points)} points) in {uri} (run id {run_id})"

    return _call(uri, f"sweep {rec.name}", log)
