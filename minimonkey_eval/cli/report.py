"""``minimonkey-eval report``: every run folder under ``--work-dir`` -> report.md / .xlsx / .html + charts."""
from __future__ import annotations

from pathlib import Path

from minimonkey_eval.cli.args import CliError, add_tracker_args, tracker_options


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="compare every run folder under --work-dir (report.md/.xlsx/.html + charts)")
    p.add_argument("--work-dir", type=Path, default=Path("results"))
    p.add_argument("--out", type=Path, default=None, help="report folder (default WORK_DIR/report)")
    p.add_argument("--published", default="card", help="published rows shown: card (models <= 4B + those with a "
                   "measured run; default), all (both cards), or NAME,NAME,...")
    add_tracker_args(p, mlflow_default="WORK_DIR/mlruns")
    p.set_defaults(handler=run)


def run(args) -> int:
    # lazy: pandas, matplotlib, openpyxl
    from minimonkey_eval.eval.report.build import build_report
    from minimonkey_eval.eval.report.landscape import parse_published

    if not args.work_dir.is_dir():
        raise CliError(f"{args.work_dir}: work dir not found")
    try:
        paths = build_report(args.work_dir, args.out, published=parse_published(args.published))
    except OSError as exc:
        raise CliError(f"{exc.filename or args.out or args.work_dir}: cannot write the report "
                       f"({exc.strerror or exc}); pass --out to a writable folder") from None
    print(f"report: {paths.markdown}")
    print(f"        {paths.xlsx}")
    print(f"        {paths.html}")
    trackers = tracker_options(args)
    if trackers.log_to:
        from minimonkey_eval.eval.trackers.log import log_runs  # lazy: wandb / mlflow (optional extras)

        for line in log_runs(trackers, args.work_dir, report=paths):
            print(line)
    return 0
