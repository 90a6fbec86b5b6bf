"""``minimonkey-eval compare RUN_A RUN_B``: paired significance of two run folders, benchmark by benchmark."""
from __future__ import annotations

from pathlib import Path

from minimonkey_eval.cli.args import count, int_at_least
from minimonkey_eval.datasets.registry import get_benchmark
from minimonkey_eval.eval.stats import significance as sig


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="paired significance of two run folders (Δ, CI, McNemar/bootstrap, Holm)")
    p.add_argument("run_a", type=Path, help="run folder A (Δ = A − B)")
    p.add_argument("run_b", type=Path, help="run folder B")
    p.add_argument("--data", default=None, help="comma-separated benchmarks (default: every one both runs have)")
    p.add_argument("--intersect", action="store_true", help="compare only the samples both runs have")
    p.add_argument("--resamples", type=int_at_least(1000), default=sig.DEFAULT_RESAMPLES)
    p.add_argument("--seed", type=count, default=sig.DEFAULT_SEED)
    p.add_argument("--flips", type=Path, default=None, help="also write the flip list to this CSV")
    p.set_defaults(handler=run)


def run(args) -> int:
    # lazy: pandas and the statistics
    from minimonkey_eval.eval.stats.compare import compare_runs, format_table
    from minimonkey_eval.eval.stats.units import UnitsError

    if args.resamples < 1000:
        raise UnitsError(f"--resamples {args.resamples}: use at least 1000 (default {sig.DEFAULT_RESAMPLES})")
    datasets = None
    if args.data:
        try:
            datasets = [get_benchmark(n).vlmeval_name for n in args.data.split(",") if n.strip()]
        except ValueError as exc:
            raise UnitsError(f"--data: {exc}") from None
    c = compare_runs(args.run_a, args.run_b, datasets, intersect=args.intersect, resamples=args.resamples,
                     seed=args.seed)
    if not c.results and not c.skipped:
        raise UnitsError(f"{args.run_a} and {args.run_b} have no benchmark in common")
    print(format_table(c))
    if args.flips:
        c.flips.to_csv(args.flips, index=False)
        print(f"flip list: {args.flips}")
    return 0
