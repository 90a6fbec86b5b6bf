"""The run folder: options, names, identity (what decides the predictions), the lock and ``run.json``.

Run folder ``{work_dir}/{run_name}/`` (what ``report.build_report`` reads)::

    run.json                      identity (model, checkpoint hash, tiles, SCM...), versions, argv, timings
    summary.csv / summary.xlsx    one row: run_name, model, label, demo, then the registry's PAPER_COLUMNS
    {DATASET}_score.csv / .xlsx   long sub-scores (dataset, metric, value, extraction); metric 'headline'
    {DATASET}_samples.csv         index, question, answer, prediction, score, image_path, failed, reason
    {model}_{DATASET}.xlsx        VLMEvalKit's prediction file (dataset rows + 'prediction'), and next to it
                                  the files vlmeval's evaluate() writes (_acc.csv, _score.csv, ...)
    predictions/{DATASET}.part{R}.jsonl   append-only per-rank predictions (resume state)
    predictions/{DATASET}.jsonl           merged, in dataset order
    .lock                         fcntl lock held while a run writes the folder

A run folder whose ``run.json`` disagrees on model, checkpoint, tiles, SCM or max_new_tokens is refused (one
line) unless ``--overwrite``, which empties it first. :class:`RunFolder` is the part of ``runner.Runner`` that
handles it; ``inference.Inference`` fills the predictions, ``writers.Writers`` the sheets.
"""
from __future__ import annotations

import json
import math
import logging
import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.models.registry import get_model
from minimonkey_eval.models.settings import ScmConfig, is_tiles_text
from minimonkey_eval.models.tile_profiles import max_new_tokens_for
from minimonkey_eval.eval.backends import authors_setting
from minimonkey_eval.eval.run.guards import check_run_folder, check_run_json, is_unstarted
from minimonkey_eval.eval.run.store import LOCK_NAME, RunLock, atomic_write_text

logger = logging.getLogger(__name__)

DEFAULT_TILE_PROFILE = "vlmevalkit"
# run.json fields that decide the predictions: a resumed run must agree on all of them.
IDENTITY_FIELDS = ("model", "msac", "checkpoint_sha256", "tile_profile", "tiles_override", "scm", "scm_ratio",
                   "scm_fix_off_by_one", "max_new_tokens", "demo", "dtype", "attn")
_OLD_FOLDER_DEFAULTS = {"scm_fix_off_by_one": False}   # identity fields added later: what a folder without one meant


class RunError(UserFacingError):
    """A problem with the run's options, data or run folder (one line)."""


# --------------------------------------------------------------------------------------------------- options
@dataclass
class RunOptions:
    model: str
    datasets: list[str]
    model_path: str | None = None
    data_root: str | None = None
    work_dir: str = "results"
    run_name: str | None = None
    batch_size: int | str | None = None  # N, 'auto' (free device memory / estimated tokens), None: see runner
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
        return self.run_dir / "summary.csv"


def split_tiles_option(text: str | None) -> tuple[str, str | None]:
    """``--tiles``: ``(profile, override)``; a ``MIN-MAX[/MIN2-MAX2]`` string is an override of the default profile."""
    if text is None or not str(text).strip():
        return DEFAULT_TILE_PROFILE, None
    text = str(text).strip()
    if is_tiles_text(text):
        return DEFAULT_TILE_PROFILE, re.sub(r"\s+", "", text)
    return text, None


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


def model_path_for(model: str, given: str | None) -> Path:
    env = get_model(model).env_var
    path = given or os.environ.get(env)
    if not path:
        raise RunError(f"{model}: no --model-path given and ${env} is not set")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise RunError(f"{path}: model directory not found (--model-path / ${env})")
    return path.resolve()


def label_for(model: str, msac: bool, scm: bool, profile: str, override: str | None) -> str:
    spec = get_model(model)
    label = spec.label
    if msac and not spec.msac_native:
        label += " + MSAC"
    if scm:
        label += " + SCM"
    if profile != DEFAULT_TILE_PROFILE:
        label += f" ({profile} tiles)"
    if override:
        label += f" (tiles {override})"
    return label


def default_run_name(model: str, msac: bool, scm: ScmConfig | None, profile: str, override: str | None) -> str:
    name = model
    if msac and not get_model(model).msac_native:
        name += "_msac"
    if scm is not None:
        name += "_scm" + ("" if scm.ratio == 0.5 else f"{scm.ratio:g}") + ("_fixobo" if scm.fix_off_by_one else "")
    if profile != DEFAULT_TILE_PROFILE:
        name += f"_{profile}"
    if override:
        name += "_tiles" + override.replace("/", "_")
    return name


# --------------------------------------------------------------------------------------------------- provenance
def git_commit(start: Path | None = None) -> str | None:
    """HEAD of the git checkout holding this package, read from ``.git`` (no git process)."""
    here = Path(start or __file__).resolve()
    for parent in [here, *here.parents]:
        git = parent / ".git"
        if git.is_file():  # worktree / submodule: 'gitdir: <path>'
            text = git.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                git = (parent / text[len("gitdir:"):].strip()).resolve()
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text(encoding="utf-8").strip()
            if not head.startswith("ref:"):
                return head or None
            ref = head[4:].strip()
            common = git
            if (git / "commondir").is_file():
                common = (git / (git / "commondir").read_text().strip()).resolve()
            for base in (git, common):
                if (base / ref).is_file():
                    return (base / ref).read_text(encoding="utf-8").strip()
            for base in (git, common):
                packed = base / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text(encoding="utf-8").splitlines():
                        parts = line.split()
                        if len(parts) == 2 and parts[1] == ref:
                            return parts[0]
        except OSError:
            return None
        return None
    return None


def versions() -> dict[str, str | None]:
    from importlib import metadata

    def version(*names):
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return None

    out = {"python": platform.python_version()}
    try:
        import torch

        out["torch"] = torch.__version__
        out["cuda"] = torch.version.cuda
    except ImportError:  # pragma: no cover
        out["torch"] = None
    out["transformers"] = version("transformers")
    out["vlmeval"] = version("ms-vlmeval", "vlmeval")
    from minimonkey_eval import __version__

    out["minimonkey_eval"] = __version__
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable ({exc}); fix it or use --overwrite") from None


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


# --------------------------------------------------------------------------------------------------- run folder
class RunFolder:
    """Run-folder half of ``runner.Runner`` (needs its ``opts``, ``ctx``, ``datasets``, ``run_dir``...)."""

    # ---- settings ---------------------------------------------------------------------------------------------
    def tile_setting(self, dataset: str | None):
        from minimonkey_eval.models.tile_profiles import resolve_tiles

        return resolve_tiles(self.tile_model, dataset, self.profile, self.override)

    def tiles_record(self, dataset: str) -> dict:
        setting = self.tile_setting(dataset)
        return {"kind": setting.kind, "tiles": setting.describe(),
                "max_new_tokens": self.opts.max_new_tokens or max_new_tokens_for(self.tile_model, dataset, self.profile),
                **authors_setting.dataset_record(self.opts.model, self.tile_model, self.profile, dataset,
                                                 self.override)}

    def identity(self) -> dict:
        return {"model": self.opts.model, "msac": self.msac, "checkpoint_sha256": self.fingerprint,
                "tile_profile": self.profile, "tiles_override": self.override, "scm": self.opts.scm is not None,
                "scm_ratio": float(self.opts.scm.ratio) if self.opts.scm else None,
                "scm_fix_off_by_one": bool(self.opts.scm and self.opts.scm.fix_off_by_one),
                "max_new_tokens": self.opts.max_new_tokens, "demo": bool(self.opts.demo),
                "dtype": self.run_dtype, "attn": self.opts.attn}

    @property
    def run_dtype(self) -> str:
        """The dtype the predictions are made in (torch name): the given engine's, else --dtype (or the tile
        profile's default) resolved for the device."""
        if self._engine is not None:
            return str(self._engine.dtype).replace("torch.", "")
        from minimonkey_eval.models.options import resolve_dtype

        dtype = self.opts.dtype or authors_setting.default_dtype(self.profile)
        return resolve_dtype(dtype, self.ctx.device_for(self.opts.device) or "cpu")

    # ---- run folder -------------------------------------------------------------------------------------------
    def _check_existing(self, old: dict) -> str | None:
        """Why the existing run.json cannot be resumed by this run (None: it can)."""
        mine = self.identity()
        diffs = [f"{k}={old.get(k)!r} (this run: {mine.get(k)!r})" for k in IDENTITY_FIELDS
                 if old.get(k, _OLD_FOLDER_DEFAULTS.get(k)) != mine.get(k) and (k in old or k not in ("dtype", "attn"))]   # older folders lack them
        old_tiles = old.get("tiles") or {}
        for ds in self.datasets:
            if ds in old_tiles and old_tiles[ds] != self.tiles_record(ds):
                diffs.append(f"tiles[{ds}]={old_tiles[ds]!r} (this run: {self.tiles_record(ds)!r})")
        return "; ".join(diffs) or None

    def _clear_run_dir(self) -> None:
        for child in self.run_dir.iterdir():
            if child.name == LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def _open_run_dir(self) -> None:
        """Rank 0: lock the folder, check or reset an existing run.json, write the starting run.json."""
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._lock = RunLock(self.run_dir).acquire()
        except OSError as exc:
            raise RunError(f"{self.run_dir}: cannot write the run folder ({exc.strerror or exc}); "
                           "check --work-dir") from None
        check_run_folder(self.run_dir)
        old = _read_json(self.run_dir / "run.json") if not self.opts.overwrite else None
        if old is not None:
            check_run_json(old, self.run_dir / "run.json")
            if is_unstarted(self.run_dir, old) and self._check_existing(old):
                logger.warning("%s: run.json of a run that stopped before its first prediction; starting afresh",
                               self.run_dir)
                old = None
        if old is None and not self.opts.overwrite and any(p.stat().st_size
                                                           for p in (self.run_dir / "predictions").glob("*.jsonl")):
            raise RunError(f"{self.run_dir} holds predictions but no run.json, so which model and tiles made them "
                           "is unknown; use another --run-name, or --overwrite to discard them")
        if old is not None:
            why = self._check_existing(old)
            if why:
                raise RunError(f"{self.run_dir} holds a different run ({why}); use another --run-name, "
                               "or --overwrite to discard it")
            self.meta = old
        else:
            if self.opts.overwrite and any(p.name != LOCK_NAME for p in self.run_dir.iterdir()):
                logger.warning("--overwrite: emptying %s", self.run_dir)
                self._clear_run_dir()
            self.meta = {}
        self.meta.update({
            "run_name": self.run_name, "label": self.label, **self.identity(),
            "tile_model": self.tile_model,
            "model_path": str(self.model_path),
            "checkpoint_files": dict(getattr(self, "checkpoint_files", {})),
            "device": self.meta.get("device"),
            "git_commit": git_commit(), "versions": versions(), "argv": list(self.opts.argv or sys.argv),
            "data_root": str(self.data_root) if self.data_root else None,
            "judge": self.opts.judge, "batch_size": self.batch_size, "limit": self.opts.limit,
            "normalize_on_device": self.opts.normalize_on_device, "wrapper": authors_setting.run_record(self.profile),
            "world_size": self.ctx.world_size,
        })
        self.meta.setdefault("datasets", [])
        self.meta.setdefault("tiles", {})
        self.meta.setdefault("results", {})
        timings = self.meta.setdefault("timings", {})
        timings.setdefault("first_started", _now())
        timings.update({"started": _now(), "finished": None})
        timings.setdefault("datasets", {})
        if self.opts.demo:
            self.meta["demo_note"] = ("demo: random tiny model; max_new_tokens capped at "
                                      f"{self.opts.max_new_tokens}; numbers are meaningless")
        self._save_meta()

    def _save_meta(self) -> None:
        _write_json(self.run_dir / "run.json", self.meta)

    def _record_engine(self) -> None:
        if self._engine is not None:
            self.meta["dtype"] = str(self._engine.dtype).replace("torch.", "")
            self.meta["device"] = str(self._engine.device)
        elif not self.meta.get("dtype"):
            self.meta["dtype"], self.meta["device"] = self.opts.dtype, self.opts.device

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
