"""``minimonkey-eval run`` (infer + score datasets into one run folder) and ``run-all`` (run, then the report).

``run-all`` composes the two here: the runner knows nothing of the report.
"""
from __future__ import annotations

import math

from minimonkey_eval.cli.args import add_run_args, add_tracker_args, tracker_options


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="infer + score one or more datasets for one model (resumable)")
    add_run_args(p, data_help="VLMEvalKit dataset name(s), comma separated (e.g. MME,OCRBench)")
    p.set_defaults(handler=run)
    p = sub.add_parser("run-all", help="run every dataset (default: the 16 of the paper table), then the report")
    add_run_args(p, data_help="'all' (the registry's 16 datasets) or a comma-separated list", data_default="all")
    add_tracker_args(p, mlflow_default="WORK_DIR/mlruns")
    p.set_defaults(handler=run_all)


def print_run(result) -> None:
    for o in result.outcomes.values():
        head = "-" if math.isnan(o.headline) else f"{o.headline:.4g}"
        failed = f", {o.failed} failed" if o.failed else ""
        print(f"{o.dataset:16s} {head:>8s}  ({o.rows} rows, {o.inferred} inferred now{failed})")
    print(f"run folder: {result.run_dir}")
    print(f"summary: {result.summary_csv}")


def _options(args):
    from minimonkey_eval.eval.run.options import options_from_args, parse_datasets

    return options_from_args(args, parse_datasets(args.data, allow_all=True))


def run(args) -> int:
    from minimonkey_eval.eval.launch import run as run_datasets  # lazy: the runner imports torch and vlmeval

    result = run_datasets(_options(args))
    if result.is_main:
        print_run(result)
    return 0


def run_all(args) -> int:
    from minimonkey_eval.eval.launch import run as run_datasets
    from minimonkey_eval.eval.report.build import build_report
    from minimonkey_eval.eval.run.distributed import DistContext

    opts = _options(args)
    with DistContext.from_env(opts.device) as ctx:
        result = run_datasets(opts, ctx=ctx)
    if result.is_main:
        print_run(result)
        paths = build_report(result.run_dir.parent)
        print(f"report: {paths.markdown}")
        trackers = tracker_options(args)
        if trackers.log_to:
            from minimonkey_eval.eval.trackers.log import log_runs  # lazy: wandb / mlflow (optional extras)
            from minimonkey_eval.eval.trackers.options import TrackerError

            try:
                for line in log_runs(trackers, result.run_dir.parent, [result.run_dir], paths):
                    print(line)
            except TrackerError as exc:
                raise TrackerError(f"{exc}; the run and the report are saved: log them later with `minimonkey-eval "
                                   f"report --work-dir {result.run_dir.parent} --log-to ...`") from None
    return 0
