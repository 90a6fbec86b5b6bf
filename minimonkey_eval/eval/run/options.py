"""What a run is asked to do and what it hands back: :class:`RunOptions`, their checks, :class:`RunResult`.

``RunOptions`` holds every option of ``run`` / ``run-all`` (the CLI's arguments, :func:`options_from_args`, or a
Python caller's values); :func:`check_options` checks the ones every backend shares (one line per bad value, before
anything is loaded), :func:`check_run_name` (the pattern lives in ``naming``) and :func:`show_progress`
(``--no-progress``, else ``$MINIMONKEY_NO_PROGRESS``). The default batch size is ``models.settings.default_batch_size``.
Imports nothing heavy.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.models.settings import ScmConfig
from minimonkey_eval.naming import NAME_RULE, is_valid_name

NO_PROGRESS_ENV = "MINIMONKEY_NO_PROGRESS"   # "1": no progress bars when RunOptions.progress is None
# option -> (smallest, largest): beyond these a run would hang, allocate without bound or start a thread storm.
OPTION_CAPS = {
    "batch_size": (1, 4096), "limit": (1, 10_000_000), "max_new_tokens": (1, 32768),
    "stage_threads": (1, 64), "max_image_pixels": (0, 1 << 40),
}


class RunError(UserFacingError):
    """A problem with the run's options, data or run folder (one line)."""


@dataclass
class RunOptions:
    model: str
    datasets: list[str]
    model_path: str | None = None
    data_root: str | None = None
    work_dir: str = "results"
    run_name: str | None = None
    # N, 'auto' (free device memory / estimated tokens), None: settings.default_batch_size
    batch_size: int | str | None = None
    limit: int | None = None
    scm: ScmConfig | None = None        # SCM on (ratio, fix_off_by_one) or off; the CLI's three --scm options
    tiles: str | None = None            # a tile profile name, or 'MIN-MAX/MIN2-MAX2' | 'MIN-MAX'
    judge: str | None = None
    max_new_tokens: int | None = None   # None: the tile profile's (512 VLMEvalKit MiniMonkey, 4096 InternVL2)
    allow_download: bool = False
    dtype: str | None = None
    device: str | None = None
    attn: str = "sdpa"
    msac: bool = False                  # InternVL2-2B with Mini-Monkey's MSAC tiles (plug-and-play)
    overwrite: bool = False
    keep_failed: bool = False           # don't retry samples recorded as failed (default: a rerun retries them)
    demo: bool = False
    max_image_pixels: int | None = None  # Pillow's decompression-bomb limit (None: vlmeval's 1e9; 0: no limit)
    prefetch: bool = True               # stage (prompt, tiles, tokens) on threads while the device answers
    stage_threads: int | None = None    # threads tiling and tokenizing (None: cores per rank - 1, at most 8)
    normalize_on_device: bool = False   # uint8 tiles normalised on the device (engine loaded here; see Engine)
    argv: list[str] | None = None
    score: bool = True                  # False: inference only (``bench``); no sheets, no vlmeval evaluate
    reference: bool = False             # VLMEvalKit-style reference mode (``bench``): batch 1, no overlap, eager
    progress: bool | None = None        # progress bars; None: shown unless $MINIMONKEY_NO_PROGRESS=1
    reuse: bool = True                  # compute each image once (models.reuse); not part of the run's identity


@dataclass
class DatasetOutcome:
    dataset: str
    rows: int
    inferred: int                       # samples this invocation inferred (all ranks)
    failed: int = 0
    headline: float = math.nan
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    run_dir: Path
    run_name: str
    outcomes: dict[str, DatasetOutcome]
    is_main: bool = True

    @property
    def summary_csv(self) -> Path:
        return RunLayout(self.run_dir).summary_csv


# --------------------------------------------------------------------------------------------------- checks
def check_options(opts: RunOptions) -> None:
    """The options every backend shares: batch size, --limit, answer length, pixel limit, their caps, SCM's type."""
    if opts.batch_size is not None and opts.batch_size != "auto" and (
            not isinstance(opts.batch_size, int) or opts.batch_size < 1):
        raise RunError(f"--batch-size must be a positive integer or 'auto', got {opts.batch_size!r}")
    if opts.limit is not None and opts.limit < 1:
        raise RunError(f"--limit must be >= 1, got {opts.limit}")
    if opts.max_new_tokens is not None and opts.max_new_tokens < 1:
        raise RunError(f"--max-new-tokens must be >= 1, got {opts.max_new_tokens}")
    if opts.max_image_pixels is not None and opts.max_image_pixels < 0:
        raise RunError(f"--max-image-pixels must be >= 0 (0: no limit), got {opts.max_image_pixels}")
    for name, (lo, hi) in OPTION_CAPS.items():
        value = getattr(opts, name, None)
        if value is None or (name == "batch_size" and value == "auto"):   # auto: sized from device memory
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise RunError(f"--{name.replace('_', '-')} must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise RunError(f"--{name.replace('_', '-')} must be in {lo}..{hi}, got {value}")
    if opts.scm is not None and not isinstance(opts.scm, ScmConfig):
        raise RunError(f"scm must be a ScmConfig or None (SCM off), got {opts.scm!r}")


def check_run_name(name: str) -> str:
    """``--run-name`` (or the default one) as a folder name under ``--work-dir``; one line when it cannot be."""
    if not is_valid_name(name):
        raise RunError(f"--run-name {name!r}: {NAME_RULE}")
    return name


def parse_datasets(text: str | list[str], allow_all: bool = True) -> list[str]:
    """``'MME,POPE'`` -> VLMEvalKit names (paper columns accepted); ``'all'`` -> the registry's 16 datasets."""
    from minimonkey_eval.datasets.registry import DEFAULT_DATASETS, get_benchmark

    items = text if isinstance(text, list) else [x for x in re.split(r"[,\s]+", str(text)) if x]
    names: list[str] = []
    for item in items:
        if item.lower() == "all" and allow_all:
            names.extend(DEFAULT_DATASETS)
            continue
        try:
            names.append(get_benchmark(item).vlmeval_name)
        except ValueError as exc:
            raise RunError(str(exc)) from None
    if not names:
        raise RunError("--data: no dataset given")
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------------------------------- defaults
def show_progress(opts: RunOptions) -> bool:
    """Whether the run draws progress bars: ``opts.progress``, else unless ``$MINIMONKEY_NO_PROGRESS`` is ``1``."""
    if opts.progress is not None:
        return bool(opts.progress)
    return os.environ.get(NO_PROGRESS_ENV) != "1"


def options_from_args(args, datasets: list[str]) -> RunOptions:
    """The parsed CLI arguments as RunOptions (same-named fields; ``--scm``/``--scm-ratio``/``--scm-fix-off-by-one``
    become one ``ScmConfig | None``)."""
    from minimonkey_eval.models.settings import scm_config

    names = {f.name for f in dataclasses.fields(RunOptions)}
    values = {k: v for k, v in vars(args).items() if k in names and k not in ("datasets", "argv", "scm")}
    fix = bool(getattr(args, "scm_fix_off_by_one", False))
    if fix and not getattr(args, "scm", False):
        raise RunError("--scm-fix-off-by-one changes SCM; add --scm")
    try:
        values["scm"] = scm_config(bool(getattr(args, "scm", False)), getattr(args, "scm_ratio", 0.5), fix)
    except (TypeError, ValueError):
        raise RunError(f"--scm-ratio must be in (0, 1], got {args.scm_ratio}") from None
    for key in ("model_path", "data_root", "work_dir"):
        if values.get(key) is not None:
            values[key] = str(values[key])
    return RunOptions(datasets=datasets, argv=list(sys.argv), **values)
