"""Weights & Biases: a run folder as a W&B run (config = identity, metrics = headlines and CIs, a ``headlines``
table, an ``evaluation`` artifact holding the score sheets and the report), a sweep as a run with a ``sweep_points``
table and a ``sweep`` artifact. Offline (``--wandb-mode offline`` or ``WANDB_MODE=offline``) it writes under
``$WANDB_DIR/wandb/offline-run-*`` with no network; ``wandb sync`` uploads that folder later.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from minimonkey_eval.eval.trackers.options import INSTALL, TrackerError, TrackerOptions, first_line
from minimonkey_eval.eval.trackers.records import KEY_TAG, TrackedRun, TrackedSweep


def _wandb():
    os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")   # no W&B Weave advice on our console (an LLM tracer)
    try:
        import wandb  # optional extra, seconds to import: only when --log-to names it
    except ImportError:
        raise TrackerError(f"--log-to wandb needs the wandb package: {INSTALL}") from None
    return wandb


def _start(opts: TrackerOptions, name: str, run_id: str, config: dict, tags: list[str], job_type: str):
    wandb = _wandb()
    # our console stays ours: no W&B banner, no capture of stdout, no system metrics thread, no code snapshot
    settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, save_code=False)
    try:
        return wandb.init(project=opts.project, entity=opts.wandb_entity, name=name, id=run_id, resume="allow",
                          config=config, tags=tags, job_type=job_type, mode=opts.wandb_mode, dir=opts.wandb_dir,
                          settings=settings, reinit="create_new")
    except Exception as exc:  # W&B's own error types (login, network, project): one line for all of them
        raise TrackerError(f"wandb: cannot start run {name!r} ({first_line(exc)}); without network use "
                           "--wandb-mode offline and `wandb sync` later") from None


def flush() -> None:
    """Wait until W&B's service has written everything (offline: the run folders are complete for `wandb sync`)."""
    wandb = sys.modules.get("wandb")     # None: never imported (or not installed): nothing to wait for
    if wandb is not None:
        wandb.teardown()


def _where(run) -> str:
    if run.settings.mode in ("offline", "dryrun"):
        folder = Path(run.dir).parent
        return f"offline in {folder} (upload later: wandb sync {folder})"
    return str(run.url or run.id)


def log_run(rec: TrackedRun, opts: TrackerOptions) -> str:
    wandb = _wandb()
    config = {**rec.params, "run_folder": rec.tags["run_folder"], KEY_TAG: rec.key_hash}
    tags = [rec.tags["model"]] + (["demo"] if rec.params.get("demo") == "True" else [])
    run = _start(opts, rec.name, rec.run_id, config, tags, "evaluation")
    try:
        run.log({**rec.metrics, "headlines": wandb.Table(dataframe=rec.headline_table())})
        art = wandb.Artifact(f"results-{rec.run_id}", type="evaluation", metadata={"run_name": rec.name})
        for path in rec.sheets:
            art.add_file(str(path), name=f"scores/{path.name}")
        for path in rec.report:
            art.add_file(str(path), name=f"report/{path.name}")
        run.log_artifact(art)
        return f"wandb: run {rec.name} {_where(run)}"
    finally:
        run.finish()


def log_sweep(rec: TrackedSweep, opts: TrackerOptions) -> str:
    wandb = _wandb()
    run = _start(opts, rec.name, rec.run_id, {"sweep_folder": rec.folder, KEY_TAG: rec.key_hash}, ["sweep"],
                 "sweep")
    try:
        run.log({"sweep_points": wandb.Table(dataframe=rec.points)})
        art = wandb.Artifact(f"sweep-{rec.run_id}", type="sweep", metadata={"sweep_folder": rec.folder})
        for path in rec.files:
            art.add_file(str(path), name=path.name)
        run.log_artifact(art)
        return f"wandb: sweep {rec.name} ({len(rec.points)} points) {_where(run)}"
    finally:
        run.finish()

