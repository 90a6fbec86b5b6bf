"""Arguments shared by the sub-commands, declared once: the one-line parser, engine / SCM / run options, value types.

Imports nothing heavy (no torch, no vlmeval): ``--help`` and argument errors stay instant.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.run.options import NO_PROGRESS_ENV
from minimonkey_eval.eval.trackers.options import DEFAULT_PROJECT, TrackerError, TrackerOptions, parse_log_to
from minimonkey_eval.models.options import ATTN_CHOICES, DTYPE_CHOICES, device_name, dtype_name
from minimonkey_eval.models.registry import PAIR_BASE, PAIR_NEW, get_model, model_names
from minimonkey_eval.models.settings import CPU_BATCH_SIZE, CUDA_BATCH_SIZE, is_tiles_text, parse
from minimonkey_eval.models.tile_profiles import PROFILES

EXIT_USAGE = 2
BATCH_SIZE_DEFAULT = f"default {CUDA_BATCH_SIZE} on CUDA, {CPU_BATCH_SIZE} on CPU"


class CliError(UserFacingError):
    """A bad command-line value (one line)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option as one ``error:`` line (no usage block), exit 2, like every other error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def label(name: str) -> str:
    """A registered model's report label (read when the parser is built: a model registered later is seen)."""
    return get_model(name).label


def add_engine_options(p: argparse.ArgumentParser, attn_help: str | None = None) -> None:
    """``--dtype``, ``--device``, ``--attn`` with one meaning everywhere (run, run-all, chat, demo, bench, sweep)."""
    p.add_argument("--dtype", default=None, type=dtype_name, metavar="{" + ",".join(DTYPE_CHOICES) + "}",
                   help="bf16 | fp16 | fp32 (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--device", default=None, type=device_name, metavar="{cpu,cuda,cuda:N}",
                   help="cuda | cpu | cuda:N (default: cuda if available)")
    p.add_argument("--attn", default="sdpa", choices=ATTN_CHOICES,
                   help=attn_help or "attention kernel (default: PyTorch SDPA; flash_attention_2 if flash-attn "
                                     "is installed)")


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """The engine options plus ``--normalize-on-device``."""
    add_engine_options(p)
    p.add_argument("--normalize-on-device", action="store_true",
                   help="tiles leave the CPU as uint8 and are normalised on the device: 1/4 of the bytes, no float "
                        "work on the CPU (bit-equal on CPU; confirm on CUDA with tests/models/test_tiling.py first)")


def add_scm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scm", action="store_true", help="enable SCM (scale compression); off in VLMEvalKit's wrapper")
    p.add_argument("--scm-ratio", type=ratio, default=0.5, help="fraction of first-scale tokens SCM keeps")
    p.add_argument("--scm-fix-off-by-one", action="store_true",
                   help="keep the token right after the first-scale block that the official SCM drops")


def add_progress_arg(p: argparse.ArgumentParser, default=None) -> None:
    """``--no-progress`` (``RunOptions.progress``): before the command (every command takes it) or after it."""
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=default,
                   help=f"no progress bars (without this option, ${NO_PROGRESS_ENV}=1 turns them off too; -q too)")


def add_console_args(p: argparse.ArgumentParser, default=None) -> None:
    """``-q`` / ``-v`` (and ``--no-progress``): on the main parser (default None, read once the command is known)
    and on every sub-parser (``default=argparse.SUPPRESS``: given after the command, they win; not given, they
    leave what was given before it)."""
    group = p.add_argument_group("console")
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=default,
                       help="errors only, no progress bars")
    group.add_argument("-v", "--verbose", dest="verbosity", action="count", default=default,
                       help="-v: also our info lines; -vv: debug, and the libraries' own log lines and bars")
    add_progress_arg(group, default=default)


def verbosity(args) -> int:
    """-1 (``-q``), 0 (default), 1 (``-v``), 2 (``-vv``)."""
    return 0 if args.verbosity is None else int(args.verbosity)


def add_reuse_arg(p: argparse.ArgumentParser) -> None:
    """``--no-reuse`` (``RunOptions.reuse``) for every command that answers datasets on the engine."""
    p.add_argument("--no-reuse", dest="reuse", action="store_false",
                   help="answer every question on its own (default: questions about one image share its tiles, its "
                        "ViT pass and, SCM off, its prompt prefix; the answers are the same)")


def add_tracker_args(p: argparse.ArgumentParser, mlflow_default: str) -> None:
    """``--log-to wandb|mlflow`` and each tracker's settings (run-all, report, sweep: where the headlines exist)."""
    p.add_argument("--log-to", action="append", default=None, type=tracker_list, metavar="{wandb,mlflow}",
                   help="also log identity, headlines with CIs, score sheets and the report to W&B and/or MLflow "
                        "(repeatable or comma list; needs pip install \".[trackers]\")")
    p.add_argument("--tracker-project", default=DEFAULT_PROJECT,
                   help=f"W&B project and MLflow experiment (default {DEFAULT_PROJECT})")
    p.add_argument("--wandb-entity", default=None, help="W&B team or user (default: your W&B default)")
    p.add_argument("--wandb-mode", default=None, choices=("online", "offline"),
                   help="offline: no network, `wandb sync` later (default: $WANDB_MODE, else online)")
    p.add_argument("--mlflow-uri", default=None,
                   help=f"MLflow tracking URI or a local folder (default: $MLFLOW_TRACKING_URI, else {mlflow_default})")


def tracker_list(text: str) -> list[str]:
    """``--log-to``: a tracker or a comma list of them."""
    try:
        names = parse_log_to([text])
    except TrackerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not names:
        raise argparse.ArgumentTypeError("empty value; name wandb and/or mlflow")
    return names


def tracker_options(args):
    """The parsed tracker options as ``eval.trackers.TrackerOptions`` (``log_to`` empty: nothing to log)."""
    return TrackerOptions(log_to=parse_log_to(",".join(v) for v in (args.log_to or ())),
                          project=args.tracker_project, wandb_entity=args.wandb_entity, wandb_mode=args.wandb_mode,
                          mlflow_uri=args.mlflow_uri)


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


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (checked when parsed, before anything loads)."""
    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)
count = int_at_least(0)


def ratio(text: str) -> float:
    """``--scm-ratio``: a fraction in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def nonblank(text: str) -> str:
    """A value that must say something (``--tiles ''`` is refused, not read as the default)."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("empty value; leave the option out for its default")
    return text


def tiles_arg(text: str) -> str:
    """``--tiles``: a tile profile name (vlmevalkit, monkey-repo) or 'MIN-MAX[/MIN2-MAX2]' (checked here; whether
    the profile exists for the chosen model is checked with the model)."""
    text = nonblank(text).strip()
    if is_tiles_text(text):
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text
    names = sorted({name for _, name in PROFILES})
    if text not in names:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a tile profile ({', '.join(names)}) nor "
                                         "'MIN-MAX[/MIN2-MAX2]'")
    return text


def tiles_list(text: str) -> str:
    """``sweep --tiles``: a comma-separated list of ``--tiles`` values."""
    for item in nonblank(text).split(","):
        if item.strip():
            tiles_arg(item)
    return text


def scm_list(text: str) -> str:
    """``sweep --scm``: a comma-separated list of 'off' or kept ratios in (0, 1]."""
    for item in nonblank(text).split(","):
        if item.strip() and item.strip().lower() not in ("off", "none", "0"):
            ratio(item)
    return text


def tiling_arg(text: str) -> str:
    """``chat``/``bench`` ``--tiles``: 'MIN-MAX[/MIN2-MAX2]' only."""
    text = nonblank(text).strip()
    try:
        parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def model_arg(text: str) -> str:
    """``--model``: a registered model, or ``vlmeval:NAME`` (any model VLMEvalKit registers)."""
    names = model_names()
    if text in names or (text.startswith("vlmeval:") and len(text) > len("vlmeval:")):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(names)}, vlmeval:NAME)")


def add_run_args(p: argparse.ArgumentParser, data_help: str, data_default: str | None = None) -> None:
    """Everything ``run`` and ``run-all`` take."""
    from minimonkey_eval.models.registry import MODELS

    p.add_argument("--model", required=True, type=model_arg, metavar="{" + ",".join(MODELS) + ",vlmeval:NAME}",
                   help="one of ours, or vlmeval:NAME = the wrapper VLMEvalKit registers under NAME "
                        "(needs --model-path)")
    envs = ", ".join(f"${spec.env_var} for {spec.name}" for spec in MODELS.values())
    p.add_argument("--model-path", type=Path, default=None,
                   help=f"original-format checkpoint folder (default: {envs})")
    p.add_argument("--data", required=data_default is None, default=data_default, help=data_help)
    p.add_argument("--data-root", type=Path, default=None, help="folder of <NAME>.tsv files (default: $LMUData)")
    p.add_argument("--work-dir", type=Path, default=Path("results"), help="parent of the run folders")
    p.add_argument("--run-name", default=None, help="run folder name (default: from model and settings)")
    p.add_argument("--batch-size", type=batch_size_arg, default=None,
                   help="samples per engine batch, N or 'auto' (from free device memory and each batch's estimated "
                        f"tokens; 1 on CPU); {BATCH_SIZE_DEFAULT}")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N rows of each dataset")
    add_scm_args(p)
    p.add_argument("--tiles", default=None, type=tiles_arg,
                   help="tile profile (vlmevalkit [default], monkey-repo) or MIN-MAX/MIN2-MAX2 (MSAC) | MIN-MAX")
    p.add_argument("--msac", action="store_true",
                   help=f"{label(PAIR_BASE)} (and its family) with {label(PAIR_NEW)}'s MSAC tiles (plug-and-play)")
    p.add_argument("--judge", default=None,
                   help="VLMEvalKit judge model (OpenAI-compatible API); default: none, offline scoring")
    p.add_argument("--max-new-tokens", type=positive_int, default=None, help="default: the tile profile's (512 / 4096)")
    p.add_argument("--allow-download", action="store_true", help="let VLMEvalKit download a missing TSV")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run folder of the same name")
    p.add_argument("--max-image-pixels", type=count, default=None,
                   help="Pillow's decompression-bomb limit in pixels (default VLMEvalKit's, 1e9; an image over twice "
                        "it is a failed sample); 0 = no limit")
    p.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                   help="stage each batch (prompts, tiles, tokens) only when it runs, not while the device works")
    p.add_argument("--stage-threads", type=positive_int, default=None,
                   help="threads tiling and tokenizing a batch (default: cores per torchrun rank - 1, at most 8)")
    p.add_argument("--keep-failed", action="store_true",
                   help="keep samples recorded as failed as they are (default: a rerun tries them again)")
    add_reuse_arg(p)
    add_engine_args(p)
