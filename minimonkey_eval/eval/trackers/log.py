"""The trackers' entry points: ``log_runs`` (run folders and the report: run-all, report) and ``log_sweep``."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from minimonkey_eval.eval.report.collect import ReportPaths, Run, load_runs
from minimonkey_eval.eval.trackers import mlflow_sink, wandb_sink
from minimonkey_eval.eval.trackers.options import TrackerOptions
from minimonkey_eval.eval.trackers.records import report_files, tracked_run, tracked_sweep


def log_runs(opts: TrackerOptions, work_dir: str | Path, run_dirs: Sequence[str | Path] | None = None,
             report: ReportPaths | None = None) -> list[str]:
    """Log run folders (None: every run folder the report reads under ``work_dir``), each with the report's files,
    to every tracker of ``opts.log_to``; one line per tracker run saying where it went. The default MLflow store is
    ``work_dir/mlruns``. With ``report`` (what ``build_report`` returned), the runs it read and the CIs it computed
    are logged as they are: no folder is read and no CI computed a second time."""
    work_dir = Path(work_dir)
    read = {r.path.resolve(): r for r in report.runs} if report is not None else {}
    if run_dirs is None:
        runs: list[Run | Path] = list(report.runs) if report is not None else list(load_runs(work_dir))
    else:
        runs = [read.get(Path(d).resolve(), Path(d)) for d in run_dirs]
    files = report_files(report.out_dir if report is not None else None)
    records = [tracked_run(r, files, report.run_cis if report is not None and isinstance(r, Run) else None)
               for r in runs]
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
