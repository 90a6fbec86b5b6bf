"""``minimonkey-eval bench``: throughput of ``run``'s own path on synthetic workloads (``eval/bench.py`` measures): the
VLMEvalKit-style reference, the fast path without reuse and the fast path, on one loaded engine."""
from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from minimonkey_eval.cli.args import (
    CliError,
    add_engine_options,
    add_reuse_arg,
    batch_size_arg,
    count,
    positive_int,
    tiling_arg,
)
from minimonkey_eval.datasets.workloads import WORKLOADS, workload_tiling
from minimonkey_eval.models.registry import PAIR_BASE, get_model

DEFAULT_OUT = Path("results/bench")


def workload_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in WORKLOADS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(sorted(WORKLOADS))} (comma-separated)")
    return names


def samples_list(text: str) -> list[int]:
    try:
        counts = [int(n) for n in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number, or one number per workload (comma-separated)") from None
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be >= 1")
    return counts


def add_parser(subparsers) -> None:
    """Register ``bench``; imports no torch."""
    p = subparsers.add_parser("bench", help="throughput of run's path: VLMEvalKit-style reference, fast without and "
                                            "with reuse",
                              description="Throughput of run's own path in three modes on one engine: the "
                                          "VLMEvalKit-style reference, the fast mode answering every question on its "
                                          "own (fast-no-reuse) and the fast mode computing each image once (fast).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-path", type=Path, help="original-format checkpoint directory")
    src.add_argument("--real-shapes", action="store_true",
                     help=f"write a {get_model(PAIR_BASE).label}-sized random bf16 checkpoint (~4.4 GB) to a temp dir "
                          "and use it")
    p.add_argument("--workload", default="docvqa", type=workload_list,
                   help=f"one workload or a comma-separated list, run one after the other on one loaded engine "
                        f"({', '.join(sorted(WORKLOADS))}; default docvqa)")
    p.add_argument("--samples", type=samples_list, default=[32],
                   help="synthetic samples per workload: one number for all, or one per --workload (default 32)")
    p.add_argument("--batch-size", type=batch_size_arg, default="auto", help="fast-mode batch size, N or 'auto'")
    p.add_argument("--stage-threads", type=positive_int, default=None,
                   help="fast-mode staging threads (default: cores - 1, at most 8)")
    p.add_argument("--max-new-tokens", type=positive_int, default=None,
                   help="new tokens per answer (default: the workload's realistic answer length, 8 for "
                        "DocVQA/InfoVQA/OCRBench-like, 2 for the yes/no POPE/MME-like ones)")
    p.add_argument("--tiles", default=None, type=tiling_arg,
                   help="override the workload's MSAC tiles, 'MIN-MAX/MIN2-MAX2'")
    p.add_argument("--warmup", type=count, default=1, help="untimed samples per mode before timing (default 1)")
    p.add_argument("--scm", action="store_true", help="enable SCM in both modes")
    p.add_argument("--seed", type=count, default=0)
    add_engine_options(p, attn_help="fast-path attention (the reference mode always runs eager)")
    p.add_argument("--normalize-on-device", action="store_true",
                   help="fast mode: uint8 tiles normalised on the device (the reference mode is unaffected)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where CSV + JSON go (default {DEFAULT_OUT}/)")
    add_reuse_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    """``minimonkey-eval bench``: per workload, prints the table and writes CSV + JSON to ``--out``; the engine is
    loaded once for all the workloads."""
    workloads_ = args.workload if isinstance(args.workload, list) else [args.workload]
    counts = args.samples if isinstance(args.samples, list) else [args.samples]
    if len(counts) == 1:
        counts = counts * len(workloads_)
    if len(counts) != len(workloads_):
        raise CliError(f"--samples: {len(counts)} counts for {len(workloads_)} workloads; give one, or one each")
    if min(counts) < 1:
        raise CliError(f"--samples must be >= 1, got {min(counts)}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise CliError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.stage_threads is not None and args.stage_threads < 1:
        raise CliError(f"--stage-threads must be >= 1, got {args.stage_threads}")
    for name in workloads_:
        try:
            workload_tiling(WORKLOADS[name], args.tiles)
        except ValueError as exc:
            raise CliError(f"--tiles: {exc}") from None
    # lazy: torch, transformers and the runner
    from minimonkey_eval.eval.bench import MODES, run_bench
    from minimonkey_eval.models import Engine, ScmConfig

    modes = MODES if args.reuse else tuple(m for m in MODES if m != "fast")

    with contextlib.ExitStack() as stack:
        model_path = args.model_path
        if model_path is None:
            from minimonkey_eval.models.tiny_checkpoint import write_checkpoint

            model_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mm-bench-ckpt-")))
            print(f"writing a real-shape random checkpoint (~4.4 GB) to {model_path} ...", flush=True)
            write_checkpoint(model_path, real_shapes=True, seed=args.seed)
        engine = Engine.from_pretrained(model_path, dtype=args.dtype, device=args.device,
                                        attn_implementation=args.attn)
        for name, samples in zip(workloads_, counts):
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mm-bench-"))
            report = run_bench(engine, WORKLOADS[name], samples, work_dir, tiles=args.tiles,
                               max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                               threads=args.stage_threads, warmup=args.warmup, scm=ScmConfig() if args.scm else None,
                               seed=args.seed, normalize_on_device=args.normalize_on_device,
                               progress=args.progress, modes=modes)
            report["real_shapes"] = bool(args.real_shapes and args.model_path is None)
            _print_report(report, samples, args.out)
    return 0


def _print_report(report: dict, samples: int, out: Path) -> None:
    from minimonkey_eval.eval.bench import SPEEDUP_KEYS, fmt, format_table, write_report

    t = report["tiling"]
    print(f"workload {report['workload']} ({report['dataset']}-like, tiles {t['min_num']}-{t['max_num']}/"
          f"{t['min_num2']}-{t['max_num2']}), {samples} samples about {report['unique_images']} images "
          f"({report['questions_per_image']:g} questions per image), max_new_tokens {report['max_new_tokens']}, "
          f"device {report['device']}, dtype {report['dtype']}")
    print(f"reference preprocessing: {report['reference_preprocess']}")
    print(format_table(report["rows"]))
    rows = {row["mode"]: row for row in report["rows"]}
    for mode, row in rows.items():
        if mode == "reference":
            continue
        others = ", ".join(f"{fmt(row[SPEEDUP_KEYS[m]])}x over {m}" for m in rows if m != mode)
        print(f"{mode}: {others}; outputs equal to the reference: {row['outputs_match']}")
    csv_path, json_path = write_report(report, out)
    print(f"wrote {csv_path} and {json_path}")
