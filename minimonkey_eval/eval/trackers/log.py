"""The trackers' entry points: ``log_runs`` (run folders and the report: run-all, report) and ``log_sweep``."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from minimonkey_eval.eval.report.collect import load_runs
from minimonkey_eval.eval.trackers import mlflow_sink, wandb_sink
from minimonkey_eval.eval.trackers.options import TrackerOptions
from minimonkey_eval.eval.trackers.records import report_files, tracked_run, tracked_sweep


def log_runs(opts: TrackerOptions, work_dir: str | Path, run_dirs: Sequence[str | Path] | None = None,
             report_dir: str | Path | None = None) -> list[str]:
    """Log run folders (None: every run folder the report reads under ``work_dir``), each with the report's files,
    to every tracker of ``opts.log_to``; one line per tracker run saying where it went. The default MLflow store is
    ``work_dir/mlruns``."""
    work_dir = Path(work_dir)
    runs = [Path(d) for d in run_dirs] if run_dirs is not None else load_runs(work_dir)   # each folder read once
    report = report_files(report_dir)
    records = [tracked_run(r, report) for r in runs]
    lines = []
    for tracker in opts.log_to:
        if tracker == "wandb":
            try:
                lines += [wandb_sink.log_run(rec, opts) for rec in records]
            finally:
                wandb_sink.flush()
        else:
            lines += [mlflow_sink.log_run(rec, opts, work_dir) for rec in records]
    return lines


def log_sweep(opts: TrackerOptions, sweep_dir: str | Path) -> list[str]:
    """Log a sweep folder's points, pages and charts to every tracker of ``opts.log_to`` (default MLflow store:
    ``sweep_dir/mlruns``)."""
    rec = tracked_sweep(sweep_dir)
    lines = []
    for tracker in opts.log_to:
        if tracker == "wandb":
            try:
                lines.append(wandb_sink.log_sweep(rec, opts))
            finally:
                wandb_sink.flush()
        else:
            lines.append(mlflow_sink.log_sweep(rec, opts, Path(sweep_dir)))
    return lines
