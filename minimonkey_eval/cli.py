"""Command line: ``minimonkey-eval {make-fixtures,chat,run,run-all,demo,report,compare,bench,sweep}``.

Start-up stays light: torch/transformers/vlmeval are imported inside the sub-commands that need them.
Expected failures (bad checkpoint, missing data, bad arguments) print one ``error:`` line and exit 2.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path

from .errors import UserFacingError
from .models.registry import PAIR_BASE, PAIR_NEW, get_model
from .options import add_engine_options


def _label(name: str) -> str:
    return get_model(name).label

EXIT_USAGE = 2
# Filesystem failures a user fixes (disk full, file too big, quota, read-only, permission): one line, exit 2.
_FS_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR,
              errno.ENOTDIR}


class CliError(UserFacingError):
    """A bad command-line value (one line)."""


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    add_engine_options(p)
    p.add_argument("--normalize-on-device", action="store_true",
                   help="tiles leave the CPU as uint8 and are normalised on the device: 1/4 of the bytes, no float "
                        "work on the CPU (bit-equal on CPU; confirm on CUDA with tests/test_tiling.py first)")


def _add_scm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scm", action="store_true", help="enable SCM (scale compression); off in VLMEvalKit's wrapper")
    p.add_argument("--scm-ratio", type=float, default=0.5, help="fraction of first-scale tokens SCM keeps")
    p.add_argument("--scm-fix-off-by-one", action="store_true",
                   help="keep the token right after the first-scale block that the official SCM drops")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option as one ``error:`` line (no usage block), exit 2, like every other error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .models.registry import MODELS

    parser = OneLineParser(prog="minimonkey-eval", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("make-fixtures", help="write a tiny original-format checkpoint and sample benchmark TSVs")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--real-shapes", action="store_true",
                   help=f"{_label(PAIR_BASE)}-sized random weights (GPU speed runs)")
    p.add_argument("--shards", type=int, default=1, help="write sharded safetensors + index")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-data", action="store_true", help="only the checkpoint, no LMUData TSVs")
    p.add_argument("--family", default=None, choices=["1b", "2b", "4b", "all"],
                   help="Mini-InternVL2 family member(s) (1b Qwen2, 2b InternLM2, 4b Phi-3) into "
                        "OUT/<member>/checkpoint (default: 2b into OUT/checkpoint)")
    p.add_argument("--model", default=None, choices=list(MODELS),
                   help="write the fixture member whose LLM this registered model has into OUT/checkpoint")

    p = sub.add_parser("chat", help="answer one question about one or more images")
    p.add_argument("--model-path", required=True, type=Path)
    p.add_argument("--image", action="append", default=[], help="image file (repeat for several images)")
    p.add_argument("--question", required=True)
    p.add_argument("--baseline-tiling", action="store_true",
                   help=f"{_label(PAIR_BASE)} dynamic tiling instead of MSAC")
    p.add_argument("--tiles", default=None, help="msac 'MIN-MAX/MIN2-MAX2' (default 4-12/3-7) or dynamic 'MIN-MAX' "
                                                 "(default 1-6 with --baseline-tiling)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    _add_engine_args(p)
    _add_scm_args(p)

    p = sub.add_parser("run", help="infer + score one or more datasets for one model (resumable)")
    _add_run_args(p, data_help="VLMEvalKit dataset name(s), comma separated (e.g. MME,OCRBench)")
    p = sub.add_parser("run-all", help="run every dataset (default: the 16 of the paper table), then the report")
    _add_run_args(p, data_help="'all' (the registry's 16 datasets) or a comma-separated list", data_default="all")

    p = sub.add_parser("demo", help="fixtures + tiny random model + run-all for both models + report (CPU, minutes)")
    p.add_argument("--out", type=Path, default=Path("results/demo"), help="output folder (default results/demo)")
    p.add_argument("--max-new-tokens", type=int, default=8,
                   help="answer length cap (default 8: the random model rarely stops by itself)")
    p.add_argument("--batch-size", type=int, default=None, help="default 8 on CUDA, 1 on CPU")
    p.add_argument("--data", default="all", help="'all' or a comma-separated list of datasets")
    p.add_argument("--rows", type=int, default=3,
                   help="questions (or question groups) per dataset in the demo fixtures (default 3; 0 = the "
                        "fixture defaults, 6-10, about 2.5x slower)")
    p.add_argument("--family", default=None, choices=["1b", "2b", "4b", "all"],
                   help="also run the Mini-InternVL2 family member(s) on tiny checkpoints, MSAC off and on")
    add_engine_options(p)

    from .bench import add_bench_parser

    add_bench_parser(sub)
    from .eval.compare import add_compare_parser  # noqa: E402 - `compare RUN_A RUN_B` (paired significance)

    add_compare_parser(sub)
    from .eval.sweep import add_sweep_parser

    add_sweep_parser(sub)

    p = sub.add_parser("report", help="compare every run folder under --work-dir (report.md/.xlsx/.html + charts)")
    p.add_argument("--work-dir", type=Path, default=Path("results"))
    p.add_argument("--out", type=Path, default=None, help="report folder (default WORK_DIR/report)")
    p.add_argument("--published", default="card", help="published rows shown: card (models <= 4B + those with a "
                   "measured run; default), all (both cards), or NAME,NAME,...")
    return parser


def _model_arg(text: str) -> str:
    """``--model``: a registered model, or ``vlmeval:NAME`` (any model VLMEvalKit registers)."""
    from .models.registry import MODELS

    if text in MODELS or (text.startswith("vlmeval:") and len(text) > len("vlmeval:")):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(MODELS)}, vlmeval:NAME)")


def _add_run_args(p: argparse.ArgumentParser, data_help: str, data_default: str | None = None) -> None:
    from .models.registry import MODELS

    p.add_argument("--model", required=True, type=_model_arg, metavar="{" + ",".join(MODELS) + ",vlmeval:NAME}",
                   help="one of ours, or vlmeval:NAME = the wrapper VLMEvalKit registers under NAME (needs --model-path)")
    envs = ", ".join(f"${spec.env_var} for {spec.name}" for spec in MODELS.values())
    p.add_argument("--model-path", type=Path, default=None,
                   help=f"original-format checkpoint folder (default: {envs})")
    p.add_argument("--data", required=data_default is None, default=data_default, help=data_help)
    p.add_argument("--data-root", type=Path, default=None, help="folder of <NAME>.tsv files (default: $LMUData)")
    p.add_argument("--work-dir", type=Path, default=Path("results"), help="parent of the run folders")
    p.add_argument("--run-name", default=None, help="run folder name (default: from model and settings)")
    p.add_argument("--batch-size", type=batch_size_arg, default=None,
                   help="samples per engine batch, N or 'auto' (from free device memory and each batch's estimated "
                        "tokens; 1 on CPU); default 8 on CUDA, 1 on CPU")
    p.add_argument("--limit", type=int, default=None, help="only the first N rows of each dataset")
    _add_scm_args(p)
    p.add_argument("--tiles", default=None,
                   help="tile profile (vlmevalkit [default], monkey-repo) or MIN-MAX/MIN2-MAX2 (MSAC) | MIN-MAX")
    p.add_argument("--msac", action="store_true",
                   help=f"{_label(PAIR_BASE)} (and its family) with {_label(PAIR_NEW)}'s MSAC tiles (plug-and-play)")
    p.add_argument("--judge", default=None,
                   help="VLMEvalKit judge model (OpenAI-compatible API); default: none, offline scoring")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the tile profile's (512 / 4096)")
    p.add_argument("--allow-download", action="store_true", help="let VLMEvalKit download a missing TSV")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run folder of the same name")
    p.add_argument("--max-image-pixels", type=int, default=None,
                   help="Pillow's decompression-bomb limit in pixels (default VLMEvalKit's, 1e9; an image over twice "
                        "it is a failed sample); 0 = no limit")
    p.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                   help="stage each batch (prompts, tiles, tokens) only when it runs, not while the device works")
    p.add_argument("--stage-threads", type=int, default=None,
                   help="threads tiling and tokenizing a batch (default: cores per torchrun rank - 1, at most 8)")
    p.add_argument("--keep-failed", action="store_true",
                   help="keep samples recorded as failed as they are (default: a rerun tries them again)")
    _add_engine_args(p)


def batch_size_arg(text: str):
    """``--batch-size``: a positive integer or 'auto'."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return value


def chat_tiling(text: str | None, baseline: bool):
    """``chat --tiles``: '4-12/3-7' -> MSAC, '1-6' -> dynamic (``settings.parse``); default 4-12/3-7, or 1-6 with
    ``--baseline-tiling`` (which takes only a dynamic 'MIN-MAX')."""
    from .models.settings import DYNAMIC, Tiling, parse

    if text is None:
        return Tiling.dynamic(6) if baseline else Tiling.msac()
    try:
        tiling = parse(text)
    except ValueError as exc:
        raise CliError(f"--tiles: {exc}") from None
    if baseline and tiling.kind != DYNAMIC:
        raise CliError(f"--tiles {text!r}: --baseline-tiling takes a dynamic 'MIN-MAX'")
    return tiling


def cmd_make_fixtures(args) -> int:
    from .models.registry import get_model
    from .models.tiny_checkpoint import FAMILY, write_checkpoint, write_family

    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out}: exists and is not a folder; pass a folder (it is created if missing)")
    if args.family:
        for key, ckpt in write_family(args.out, args.family, real_shapes=args.real_shapes, seed=args.seed,
                                      shards=args.shards).items():
            print(f"checkpoint ({FAMILY[key]}): {ckpt}")
    else:
        member = get_model(args.model).fixture if args.model else "2b"
        ckpt = write_checkpoint(args.out / "checkpoint", family=member, real_shapes=args.real_shapes, seed=args.seed,
                                shards=args.shards)
        print(f"checkpoint: {ckpt}")
    if not args.no_data:
        from .datasets.fixtures import write_sample_tsvs

        written = write_sample_tsvs(args.out / "LMUData", seed=args.seed)
        print(f"LMUData: {args.out / 'LMUData'} ({len(written)} TSVs)")
    return 0


def cmd_chat(args) -> int:
    from .errors import require_checkpoint_dir
    from .models.settings import scm_config

    require_checkpoint_dir(args.model_path)            # a mistyped path fails before torch is imported

    tiling = chat_tiling(args.tiles, args.baseline_tiling)
    try:
        scm = scm_config(args.scm, args.scm_ratio, args.scm_fix_off_by_one)
    except ValueError as exc:
        raise CliError(f"--scm-ratio: {exc}") from None
    from .datasets.validate import check_image_file

    for image in args.image:
        check_image_file(image, error=CliError, probe=True)
    from .models import Engine

    engine = Engine.from_pretrained(args.model_path, dtype=args.dtype, device=args.device, attn_implementation=args.attn)
    engine.normalize_on_device = args.normalize_on_device
    answer = engine.chat(args.image, args.question, tiling=tiling, max_new_tokens=args.max_new_tokens, scm=scm)
    print(answer)
    return 0


def _print_run(result) -> None:
    import math

    for o in result.outcomes.values():
        head = "-" if math.isnan(o.headline) else f"{o.headline:.4g}"
        failed = f", {o.failed} failed" if o.failed else ""
        print(f"{o.dataset:16s} {head:>8s}  ({o.rows} rows, {o.inferred} inferred now{failed})")
    print(f"run folder: {result.run_dir}")
    print(f"summary: {result.summary_csv}")


def _run_command(args, run_all: bool) -> int:
    from .eval import runner

    datasets = runner.parse_datasets(args.data, allow_all=True)
    opts = runner.options_from_args(args, datasets)
    if run_all:
        result, paths = runner.run_all(opts)
    else:
        result, paths = runner.run(opts), None
    if result.is_main:
        _print_run(result)
        if paths is not None:
            print(f"report: {paths.markdown}")
    return 0


def cmd_run(args) -> int:
    return _run_command(args, run_all=False)


def cmd_run_all(args) -> int:
    return _run_command(args, run_all=True)


def cmd_demo(args) -> int:
    from .eval import runner
    from .eval.demo import demo

    datasets = runner.parse_datasets(args.data, allow_all=True)
    result = demo(args.out, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, device=args.device,
                  dtype=args.dtype, datasets=datasets, rows=args.rows or None, family=args.family)
    print(f"demo (random tiny model) finished in {result.seconds:.0f} s")
    for r in result.runs:
        print(f"summary: {r.summary_csv}")
    print(f"report: {result.report}")
    return 0


def cmd_report(args) -> int:
    from .eval.report import build_report
    from .eval.report_landscape import parse_published

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
    return 0


def cmd_compare(args) -> int:
    from .eval.compare import cmd_compare as run_compare

    return run_compare(args)


def cmd_sweep(args) -> int:
    from .eval.sweep import cmd_sweep as run_sweep

    return run_sweep(args)


def cmd_bench(args) -> int:
    from .bench import cmd_bench as run_bench

    return run_bench(args)


def _exit_if_threads_busy(code: int) -> None:
    """After Ctrl-C the interpreter would wait for the stage/prefetch threads to finish their batch (or forever on a
    blocked read). Predictions are fsync'd per batch, so when such a thread is still running we exit at once."""
    import threading

    busy = [t for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive()
            and t.name.startswith("minimonkey-")]
    if busy and threading.current_thread() is threading.main_thread():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


COMMANDS = {"bench": cmd_bench, "make-fixtures": cmd_make_fixtures, "chat": cmd_chat, "run": cmd_run, "run-all": cmd_run_all,
            "demo": cmd_demo, "report": cmd_report, "compare": cmd_compare, "sweep": cmd_sweep}


def main(argv: list[str] | None = None) -> int:
    # Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a shared or oversubscribed CPU
    # (CI, several torchrun ranks) spinning made CPU runs 3-4x slower; on an idle CPU it makes no difference.
    # An explicit OMP_WAIT_POLICY wins; no effect once torch is imported (in-process callers).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except UserFacingError as exc:
        if os.environ.get("RANK", "0") in ("", "0"):   # under torchrun every rank fails alike: rank 0 says it
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if exc.errno not in _FS_ERRNOS:
            raise
        if os.environ.get("RANK", "0") in ("", "0"):
            print(f"error: {exc.filename or '?'}: {exc.strerror or exc} (disk full, read-only or not allowed); "
                  "finished predictions are kept: free space or fix the folder, then rerun", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: finished predictions are saved; rerun the same command to resume", file=sys.stderr)
        _exit_if_threads_busy(130)
        return 130


if __name__ == "__main__":
    sys.exit(main())
