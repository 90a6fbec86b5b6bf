"""The batched, resumable, data-parallel benchmark runner: ``minimonkey-eval run`` / ``run-all``.

Per dataset: vlmeval dataset object (offline TSV) -> the wrapper's ``build_prompt`` (VLMEvalKit's prompts,
images dumped by vlmeval) -> tiles and token ids (``stage_rows``; the next batch is staged in a helper thread
while the device answers this one, ``--no-prefetch`` turns that off) -> our engine, ``--batch-size`` samples at a
time (``finish_rows``) -> one JSON line per sample appended and fsync'd (``predictions.py``) -> on rank 0:
VLMEvalKit's prediction xlsx ->
``scoring.score_dataset`` (vlmeval's own ``evaluate``) -> score sheets, per-sample sheet, ``summary.csv``,
``run.json``.

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

Resume: rerunning the same command skips every index already in a part file (any rank, any world size), so no
sample is inferred twice and none is lost; a run folder whose ``run.json`` disagrees on model, checkpoint,
tiles, SCM or max_new_tokens is refused (one line) unless ``--overwrite``, which empties it first.

Data parallel: under ``torchrun`` rank r infers rows r, r+W, r+2W, ... of each dataset into its own part
file; after a barrier rank 0 merges, scores once and writes every shared file.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from ..errors import UserFacingError
from . import authors_setting
from .distributed import DistContext
from ..models.registry import MINIMONKEY, get_model, model_names
from ..datasets.validate import check_message_images, guard_dump_targets
from .guards import (check_option_caps, check_run_folder, check_run_json, failure_reason,
                     is_unstarted, judge_in_use, limit_rows, load_own, record_no_samples, score_or_fail, stamp)
from .predictions import (LOCK_NAME, PredictionStore, RunLock, atomic_write_text, index_key, make_record)

logger = logging.getLogger(__name__)

DEFAULT_TILE_PROFILE = "vlmevalkit"
# What the xlsx holds for a sample that could not be answered: VLMEvalKit's own failure message, which its MCQ
# matcher treats as "no answer" (can_infer_option), with no yes/no word for the Y/N extractor.
FAILED_PREDICTION = "Failed to obtain answer via API. (minimonkey-eval: sample failed, see the samples sheet)"
ABORT_AFTER_FAILURES = 32   # this many failed samples in a row before any success: a broken setup, not bad samples
SAMPLE_COLUMNS = ("index", "question", "answer", "prediction", "score", "image_path", "failed", "reason")
# run.json fields that decide the predictions: a resumed run must agree on all of them.
IDENTITY_FIELDS = ("model", "msac", "checkpoint_sha256", "tile_profile", "tiles_override", "scm", "scm_ratio",
                   "max_new_tokens", "demo", "dtype", "attn")
_TILES_RE = re.compile(r"^\s*\d+\s*-\s*\d+\s*(/\s*\d+\s*-\s*\d+\s*)?$")


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
    batch_size: int | None = None      # None: 8 on CUDA, 1 on CPU (padded batches are slower there)
    limit: int | None = None
    scm: bool = False
    scm_ratio: float = 0.5
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
    prefetch: bool = True               # stage (prompt, tiles, tokens) the next batch in a thread while this one runs
    stage_threads: int | None = None    # threads tiling a batch (None: cores - 1, at most 8)
    normalize_on_device: bool = False   # uint8 tiles normalised on the device (engine loaded here; see Engine)
    argv: list[str] | None = None


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
    if _TILES_RE.match(text):
        return DEFAULT_TILE_PROFILE, re.sub(r"\s+", "", text)
    return text, None


def parse_datasets(text: str | list[str], allow_all: bool = True) -> list[str]:
    """``'MME,POPE'`` -> VLMEvalKit names (paper columns accepted); ``'all'`` -> the registry's 16 datasets."""
    from ..datasets.registry import DEFAULT_DATASETS, get_benchmark

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


def default_run_name(model: str, msac: bool, scm: bool, scm_ratio: float, profile: str,
                     override: str | None) -> str:
    name = model
    if msac and not get_model(model).msac_native:
        name += "_msac"
    if scm:
        name += "_scm" + ("" if scm_ratio == 0.5 else f"{scm_ratio:g}")
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
    from .. import __version__

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


# --------------------------------------------------------------------------------------------------- the runner
class Runner:
    """One run (one model setting, one run folder) over one or more datasets."""

    def __init__(self, opts: RunOptions, ctx: DistContext | None = None, engine=None):
        from ..models.tile_profiles import get_profile, parse_tiles

        if opts.model not in model_names():
            raise RunError(f"unknown --model {opts.model!r}; choose one of {', '.join(model_names())}")
        if opts.batch_size is not None and opts.batch_size < 1:
            raise RunError(f"--batch-size must be >= 1, got {opts.batch_size}")
        if opts.limit is not None and opts.limit < 1:
            raise RunError(f"--limit must be >= 1, got {opts.limit}")
        if opts.max_new_tokens is not None and opts.max_new_tokens < 1:
            raise RunError(f"--max-new-tokens must be >= 1, got {opts.max_new_tokens}")
        if opts.scm and not 0.0 < opts.scm_ratio <= 1.0:
            raise RunError(f"--scm-ratio must be in (0, 1], got {opts.scm_ratio}")
        if opts.max_image_pixels is not None and opts.max_image_pixels < 0:
            raise RunError(f"--max-image-pixels must be >= 0 (0: no limit), got {opts.max_image_pixels}")
        check_option_caps(opts)
        self.opts = opts
        self.ctx = ctx or DistContext()
        self.datasets = parse_datasets(opts.datasets, allow_all=True)
        self.profile, self.override = split_tiles_option(opts.tiles)
        spec = get_model(opts.model)
        self.tile_model = MINIMONKEY if (spec.msac_native or opts.msac) else spec.family   # tile table family
        try:
            get_profile(self.tile_model, self.profile)
            if self.override:
                parse_tiles(self.override, 512)
        except ValueError as exc:
            raise RunError(f"--tiles: {exc}") from None
        self.msac = self.tile_setting(None).kind == "msac"
        self.model_path = model_path_for(opts.model, opts.model_path)
        self.data_root = Path(opts.data_root).expanduser().resolve() if opts.data_root else None
        from ..datasets.local import import_vlmeval

        import_vlmeval(self.data_root)   # first vlmeval import with $LMUData set: nothing lands in ~/LMUData
        self.run_name = opts.run_name or default_run_name(opts.model, self.msac, opts.scm, opts.scm_ratio,
                                                          self.profile, self.override)
        if not re.fullmatch(r"[A-Za-z0-9._+=-]+", self.run_name) or self.run_name in (".", ".."):
            raise RunError(f"--run-name {self.run_name!r}: use letters, digits and ._+=- only")
        self.work_dir = Path(opts.work_dir).expanduser().resolve()
        self.run_dir = self.work_dir / self.run_name
        self.label = label_for(opts.model, self.msac, opts.scm, self.profile, self.override)
        self._engine = engine
        self.batch_size = opts.batch_size or default_batch_size(self.ctx.device_for(opts.device), engine)
        self._vlm = None
        self._lock: RunLock | None = None
        self.meta: dict = {}

    # ---- settings ---------------------------------------------------------------------------------------------
    def tile_setting(self, dataset: str | None):
        from ..models.tile_profiles import resolve_tiles

        return resolve_tiles(self.tile_model, dataset, self.profile, self.override)

    def tiles_record(self, dataset: str) -> dict:
        setting = self.tile_setting(dataset)
        return {"kind": setting.kind, "tiles": setting.describe(),
                "max_new_tokens": self.opts.max_new_tokens or setting.max_new_tokens,
                **authors_setting.dataset_record(self.opts.model, self.tile_model, self.profile, dataset,
                                                 self.override)}

    def identity(self) -> dict:
        return {"model": self.opts.model, "msac": self.msac, "checkpoint_sha256": self.fingerprint,
                "tile_profile": self.profile, "tiles_override": self.override, "scm": bool(self.opts.scm),
                "scm_ratio": float(self.opts.scm_ratio) if self.opts.scm else None,
                "max_new_tokens": self.opts.max_new_tokens, "demo": bool(self.opts.demo),
                "dtype": self.run_dtype, "attn": self.opts.attn}

    @property
    def run_dtype(self) -> str:
        """The dtype the predictions are made in (torch name): the given engine's, else --dtype resolved."""
        if self._engine is not None:
            return str(self._engine.dtype).replace("torch.", "")
        from ..options import resolve_dtype

        return resolve_dtype(self.opts.dtype, self.ctx.device_for(self.opts.device) or "cpu")

    # ---- run folder -------------------------------------------------------------------------------------------
    def _check_existing(self, old: dict) -> str | None:
        """Why the existing run.json cannot be resumed by this run (None: it can)."""
        mine = self.identity()
        diffs = [f"{k}={old.get(k)!r} (this run: {mine[k]!r})" for k in IDENTITY_FIELDS
                 if old.get(k) != mine[k] and (k in old or k not in ("dtype", "attn"))]   # older folders lack them
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

    # ---- model ------------------------------------------------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            from ..models import Engine

            device = self.ctx.device_for(self.opts.device)
            dtype = self.opts.dtype or authors_setting.default_dtype(self.profile)
            self._engine = Engine.from_pretrained(self.model_path, dtype=dtype, device=device,
                                                  attn_implementation=self.opts.attn)
            self._engine.normalize_on_device = self.opts.normalize_on_device
        return self._engine

    @property
    def vlm(self):
        if self._vlm is None:
            from .vlmeval_models import InternVL2VLM, MiniMonkeyVLM

            engine = _BatchSized(self.engine, self.batch_size)
            common = dict(tile_profile=self.profile, tiles=self.override, scm=self.opts.scm,
                          scm_ratio=self.opts.scm_ratio, engine=engine, max_new_tokens=self.opts.max_new_tokens,
                          model_path=str(self.model_path))
            if get_model(self.opts.model).msac_native:
                self._vlm = MiniMonkeyVLM(model_name=self.opts.model, **common)
            else:
                self._vlm = InternVL2VLM(model_name=self.opts.model, msac=self.opts.msac, **common)
        return self._vlm

    # ---- inference --------------------------------------------------------------------------------------------
    def message_for(self, dataset, line) -> list[dict]:
        """The message VLMEvalKit's infer_data builds for a row (dataset prompt if forced or not custom)."""
        name = dataset.dataset_name
        if getattr(dataset, "force_use_dataset_prompt", False) or not self.vlm.use_custom_prompt(name):
            return dataset.build_prompt(line)
        return self.vlm.build_prompt(line, dataset=name)

    def stage_rows(self, dataset, rows: list, pool=None) -> list:
        """The CPU half of a batch of rows (pandas Series): prompts, image files, tiles and token ids.

        Per row: a ``Staged`` (``vlm.stage``), or a failed record when the prompt itself cannot be built (corrupt
        image, bad row). Runs in the prefetch thread while the device answers the previous batch. Prompts (and
        vlmeval's image files) are made one row at a time, so two rows sharing an image never write it at once;
        the tiling and tokenizing then run on ``pool`` (threads: PIL and torch release the GIL) when given."""
        name = dataset.dataset_name
        out: list = []
        for line in rows:
            try:
                guard_dump_targets(dataset, line)
                message = self.message_for(dataset, line)
                check_message_images(message)
                out.append(message)
            except Exception as exc:  # noqa: BLE001 - recorded per sample (corrupt image, bad row)
                out.append(make_record(line["index"], "", True, _reason("prompt", exc), image_path=""))
                # KeyboardInterrupt / SystemExit are not Exceptions: they stop the run (what is done is saved)
        todo = [i for i, item in enumerate(out) if not isinstance(item, dict)]
        stage = partial(self.vlm.stage, dataset=name)
        messages = [out[i] for i in todo]
        for i, staged in zip(todo, pool.map(stage, messages) if pool is not None else map(stage, messages)):
            out[i] = staged
        return out

    def finish_rows(self, dataset, rows: list, staged: list) -> list[dict]:
        """The device half: records for ``rows`` from their ``stage_rows`` output; a failing sample becomes a failed
        record, never an error."""
        name = dataset.dataset_name
        records: dict[int, dict] = {}
        ready: list[tuple[int, object]] = []
        for pos, item in enumerate(staged):
            if isinstance(item, dict):
                records[pos] = item
            elif item.error is not None:
                records[pos] = make_record(rows[pos]["index"], "", True, _reason("prepare", item.error),
                                           image_path=_image_paths(item.message))
            else:
                ready.append((pos, item))
        for (pos, item), answer in zip(ready, self._generate([item for _, item in ready], name)):
            index, images = rows[pos]["index"], _image_paths(item.message)
            if isinstance(answer, BaseException):
                records[pos] = make_record(index, "", True, _reason("generate", answer), image_path=images)
            elif isinstance(answer, _Noted):
                records[pos] = make_record(index, answer.text, reason=answer.note, image_path=images)
            else:
                records[pos] = make_record(index, answer, image_path=images)
        return [records[p] for p in range(len(rows))]

    def infer_rows(self, dataset, rows: list) -> list[dict]:
        """Records for a batch of rows, staged and answered in this thread (``infer_dataset`` overlaps the two)."""
        self.vlm  # noqa: B018 - load the model here: a loading error is the run's, not a sample's
        return self.finish_rows(dataset, rows, self.stage_rows(dataset, rows))

    def _generate(self, staged: list, name: str) -> list:
        """Answers (or the exception of each failed sample): the batch, then halves on OOM / per sample on error."""
        if not staged:
            return []
        try:
            return list(self.vlm.generate_staged(staged))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001
            if _is_oom(exc):
                _empty_cuda_cache()
                if len(staged) == 1:
                    return [self._generate_fewer_tiles(staged[0], name, exc)]
                half = len(staged) // 2
                logger.warning("%s: out of memory on a batch of %d; retrying in halves", name, len(staged))
                return self._generate(staged[:half], name) + self._generate(staged[half:], name)
            if len(staged) == 1:
                logger.warning("%s: sample failed: %s", name, _reason("generate", exc))
                return [exc]
            logger.warning("%s: batch of %d failed (%s); retrying one by one", name, len(staged),
                           _reason("generate", exc))
            return [x for item in staged for x in self._generate([item], name)]

    def _generate_fewer_tiles(self, staged, name: str, exc: BaseException):
        """One sample that ran out of memory alone: retried with the tile maxima halved until it fits (the answer
        then carries ``'oom: retried with tiles X'``), else the OOM error (a failed sample)."""
        setting = staged.setting
        if not authors_setting.retries_fewer_tiles(self.profile):
            return authors_setting.oom_fallback(exc)
        while True:
            smaller = fewer_tiles(setting)
            if smaller is None:
                return exc
            setting = smaller
            logger.warning("%s: out of memory on one sample; retrying with tiles %s", name, setting.describe())
            try:
                answer = self.vlm.generate_staged([self.vlm.stage(staged.message, dataset=name, tiling=setting)])[0]
                return _Noted(answer, f"oom: retried with tiles {setting.describe()}")
            except KeyboardInterrupt:
                raise
            except Exception as again:  # noqa: BLE001
                if not _is_oom(again):
                    return again
                _empty_cuda_cache()
                exc = again

    def _load(self, name: str):
        from ..datasets.local import DataError, load_dataset

        try:
            dataset = load_dataset(name, data_root=self.data_root, allow_download=self.opts.allow_download)
        except DataError as exc:
            raise RunError(str(exc)) from None
        return limit_rows(dataset, self.opts.limit)

    def _predump_shared_images(self, dataset) -> None:
        """Rank 0 writes the images several rows share (MME pairs) before the others could race on them."""
        data = dataset.data
        if "image_path" not in data or "image" not in data:
            return
        keys = data["image_path"].map(str)
        for i in [i for i, dup in enumerate(keys.duplicated(keep=False)) if dup]:
            try:
                dataset.dump_image(data.iloc[i])
            except Exception:  # noqa: BLE001 - the owning rank records the failure
                pass

    def infer_dataset(self, dataset) -> int:
        """This rank's pending rows -> appended records. Returns how many samples were inferred."""
        from tqdm import tqdm

        name = dataset.dataset_name
        store = PredictionStore(self.run_dir, name)
        done = load_own(store, dataset)
        if not self.opts.keep_failed:
            done = {k: r for k, r in done.items() if not r.get("failed")}   # retried, like VLMEvalKit
        data = dataset.data
        dups = duplicate_positions(data["index"])
        pending = [p for p in self.ctx.shard(len(data))
                   if p not in dups and index_key(data.iloc[p]["index"]) not in done]
        if not pending:
            return 0
        self.vlm.set_dump_image(dataset.dump_image)
        desc = f"{self.run_name}/{name}" + (f" [rank {self.ctx.rank}/{self.ctx.world_size}]"
                                            if self.ctx.world_size > 1 else "")
        bs = self.batch_size
        batches = [[data.iloc[p] for p in pending[lo:lo + bs]] for lo in range(0, len(pending), bs)]
        ok, failed_in_a_row = 0, 0
        self.vlm  # noqa: B018 - load the model here: a loading error is the run's, not a sample's
        with store.writer(self.ctx.rank) as writer, \
                tqdm(total=len(pending), desc=desc, unit="sample", dynamic_ncols=True, file=sys.stderr,
                     disable=os.environ.get("MINIMONKEY_NO_PROGRESS") == "1") as bar:
            for rows, staged in self._staged_batches(dataset, batches):
                records = stamp(self.finish_rows(dataset, rows, staged), rows, name)
                writer.append(records)
                bar.update(len(rows))
                for r in records:
                    ok, failed_in_a_row = (ok, failed_in_a_row + 1) if r["failed"] else (ok + 1, 0)
                if not ok and failed_in_a_row >= ABORT_AFTER_FAILURES:
                    raise RunError(f"{name}: the first {failed_in_a_row} samples all failed ({records[-1]['reason']}); "
                                   "stopping - fix the cause and rerun (failed samples are retried)")
        return len(pending)

    def _staged_batches(self, dataset, batches: list[list]):
        """``(rows, stage_rows(rows))`` per batch; with ``prefetch`` the next batch is staged in a helper thread
        (PIL and torch release the GIL) while the caller answers this one, so tiling overlaps the device."""
        from concurrent.futures import ThreadPoolExecutor

        threads = self.stage_threads
        tiler = ThreadPoolExecutor(threads, thread_name_prefix="minimonkey-tile") if threads > 1 else None
        prefetch = (ThreadPoolExecutor(1, thread_name_prefix="minimonkey-stage")
                    if self.opts.prefetch and len(batches) > 1 else None)
        try:
            if prefetch is None:
                for rows in batches:
                    yield rows, self.stage_rows(dataset, rows, tiler)
                return
            future = prefetch.submit(self.stage_rows, dataset, batches[0], tiler)
            for k, rows in enumerate(batches):
                staged = future.result()
                if k + 1 < len(batches):
                    future = prefetch.submit(self.stage_rows, dataset, batches[k + 1], tiler)
                yield rows, staged
        finally:
            for pool in (prefetch, tiler):
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)

    @property
    def stage_threads(self) -> int:
        """Threads tiling a batch: ``--stage-threads``, else one per spare core of this rank's share of the machine
        (cores / torchrun's LOCAL_WORLD_SIZE, minus one), at most 8."""
        if self.opts.stage_threads is not None:
            return max(1, self.opts.stage_threads)
        local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
        return max(1, min(8, (os.cpu_count() or 2) // local_ranks - 1))

    # ---- outputs (rank 0) -------------------------------------------------------------------------------------
    def merged(self, dataset) -> list[dict]:
        """One record per dataset row, in dataset order; a missing one is an error (never silently dropped)."""
        store = PredictionStore(self.run_dir, dataset.dataset_name)
        by_key = load_own(store, dataset)
        keys = [index_key(i) for i in dataset.data["index"]]
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise RunError(f"{dataset.dataset_name}: {len(missing)} of {len(keys)} predictions missing after "
                           f"inference (e.g. index {missing[0]}); rerun the same command to fill them in")
        first: dict[str, int] = {}
        records = []
        for pos, k in enumerate(keys):
            if k in first:   # a repeated index: one prediction per index, so this row is a failed sample
                records.append(make_record(by_key[k]["index"], "", True,
                                           f"data: duplicate index {k} (row {pos}; first at row {first[k]}); "
                                           "only the first row with an index is inferred", image_path=""))
            else:
                first[k] = pos
                records.append(by_key[k])
        if len(first) < len(keys):
            logger.warning("%s: %d row(s) repeat an earlier index; recorded as failed samples",
                           dataset.dataset_name, len(keys) - len(first))
        store.write_merged(records)
        return records

    def prediction_file(self, name: str) -> Path:
        return self.run_dir / f"{self.opts.model}_{name}.xlsx"

    def write_prediction_xlsx(self, dataset, records: list[dict]) -> Path:
        """VLMEvalKit's inference output: the dataset rows (image column dropped) + 'prediction'."""
        data = dataset.data.copy()
        data["prediction"] = [FAILED_PREDICTION if r.get("failed") else xlsx_text(r["prediction"]) for r in records]
        if "image" in data:
            data.pop("image")
        path = self.prediction_file(dataset.dataset_name)
        write_xlsx(data, path)
        check_xlsx_roundtrip(path, data["prediction"].tolist())
        return path

    def write_samples(self, dataset, records: list[dict], per_sample) -> Path:
        import pandas as pd

        scores: dict[str, float] = {}
        if per_sample is not None and len(per_sample):
            scores = {index_key(i): float(s) for i, s in zip(per_sample["index"], per_sample["score"])}
        from ..datasets.registry import CIRCULAR_OFFSET, get_benchmark

        circular = get_benchmark(dataset.dataset_name).circular
        data = dataset.data
        rows = []
        for (_, line), record in zip(data.iterrows(), records):
            key = index_key(line["index"])
            score = scores.get(key)
            if score is None and circular:
                try:
                    score = scores.get(str(int(key) % CIRCULAR_OFFSET))
                except ValueError:
                    score = None
            rows.append({"index": record["index"], "question": line.get("question", ""),
                         "answer": line.get("answer", ""), "prediction": record["prediction"],
                         "score": math.nan if score is None else score,
                         "image_path": record.get("image_path", ""), "failed": bool(record.get("failed")),
                         "reason": record.get("reason", "")})
        path = self.run_dir / f"{dataset.dataset_name}_samples.csv"
        pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS)).to_csv(path, index=False)
        return path

    def finalize_dataset(self, dataset, inferred: int, t_infer: float) -> DatasetOutcome:
        from . import scoring

        name = dataset.dataset_name
        t0 = time.monotonic()
        records = self.merged(dataset)
        if not records:
            return self.finalize_empty(dataset, inferred)
        failed = sum(bool(r.get("failed")) for r in records)
        if records and failed == len(records):
            raise RunError(f"{name}: all {failed} samples failed (e.g. {records[0]['reason']}); nothing to score - "
                           "fix the cause and rerun (failed samples are retried)")
        xlsx = self.prediction_file(name)
        self.write_prediction_xlsx(dataset, records)
        judge, judge_note = self.judge_for(name)
        result = score_or_fail(name, scoring.score_dataset, name, xlsx, judge=judge, data_root=self.data_root)
        if judge_note:
            result.notes = "; ".join(x for x in (judge_note, result.notes) if x)
            logger.warning("%s: %s", name, judge_note)
        score_csv, score_xlsx = scoring.write_score_sheets(result, self.run_dir)
        samples = self.write_samples(dataset, records, result.per_sample)
        outcome = DatasetOutcome(name, len(records), inferred, failed, float(result.headline),
                                 {"predictions": str(xlsx), "score_csv": str(score_csv),
                                  "score_xlsx": str(score_xlsx), "samples": str(samples)})
        if failed:
            logger.warning("%s: %d of %d samples failed (see %s)", name, failed, len(records), samples.name)
        if name not in self.meta["datasets"]:
            self.meta["datasets"].append(name)
        self.meta["tiles"][name] = self.tiles_record(name)
        self.meta["results"][name] = {"rows": len(records), "failed": failed,
                                      "headline": None if math.isnan(outcome.headline) else outcome.headline,
                                      "extraction": result.extraction, "notes": result.notes,
                                      "judge": (judge if isinstance(judge, str) or judge is None
                                                else dict(judge).get("model")),
                                      "limit": self.opts.limit,
                                      **authors_setting.result_extras(self.profile, records)}
        self.meta["timings"]["datasets"][name] = {"inference_s": round(t_infer, 3), "inferred": inferred,
                                                  "scoring_s": round(time.monotonic() - t0, 3)}
        self.write_summary()
        self._save_meta()
        return outcome

    def finalize_empty(self, dataset, inferred: int) -> DatasetOutcome:
        """No rows: 'no samples', no headline (never a 0.0 on the summary)."""
        record_no_samples(self.meta, self.run_dir, dataset.dataset_name, self.opts.limit)
        self.write_summary()
        self._save_meta()
        return DatasetOutcome(dataset.dataset_name, 0, inferred)

    def judge_for(self, name: str):
        """(judge handed to vlmeval, note): the judge actually usable, decided once per run."""
        if not hasattr(self, "_judge"):
            self._judge = judge_in_use(self.opts.judge)
        return self._judge

    def write_summary(self) -> Path:
        """summary.csv / .xlsx: one row, the headline of every dataset scored in this folder; empty = not run."""
        import pandas as pd

        from ..datasets.registry import BENCHMARKS, PAPER_COLUMNS

        values: dict[str, float] = {}
        for bench in BENCHMARKS:
            f = self.run_dir / f"{bench.vlmeval_name}_score.csv"
            if bench.column not in PAPER_COLUMNS or not f.exists():
                continue
            column = bench.column
            df = pd.read_csv(f)
            hit = df[df["metric"].astype(str) == "headline"]
            if len(hit):
                value = pd.to_numeric(hit["value"], errors="coerce").iloc[0]
                if not pd.isna(value):
                    values[column] = float(value)
        row = {"run_name": self.run_name, "model": self.opts.model, "label": self.label,
               "demo": bool(self.opts.demo)}
        row.update({c: values.get(c, math.nan) for c in PAPER_COLUMNS})
        df = pd.DataFrame([row], columns=["run_name", "model", "label", "demo", *PAPER_COLUMNS])
        path = self.run_dir / "summary.csv"
        tmp = path.with_name(".summary.csv.tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
        df.to_excel(self.run_dir / "summary.xlsx", index=False)
        return path

    # ---- main -------------------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        from ..models.checkpoint import checkpoint_fingerprint

        self.fingerprint = checkpoint_fingerprint(self.model_path)
        error = None
        if self.ctx.is_main:
            try:
                self._open_run_dir()
            except UserFacingError as exc:
                error = str(exc)
            except BaseException:
                self._release()   # never leave the lock held (also through the Python API)
                raise
        error = self.ctx.broadcast(error)
        if error:
            self._release()
            raise RunError(error)
        t_start = time.monotonic()
        outcomes: dict[str, DatasetOutcome] = {}
        from PIL import Image

        old_limit = Image.MAX_IMAGE_PIXELS
        if self.opts.max_image_pixels is not None:
            Image.MAX_IMAGE_PIXELS = self.opts.max_image_pixels or None   # 0: no limit
        try:
            for name in self.datasets:
                dataset = self._load(name)
                if self.ctx.world_size > 1:
                    if self.ctx.is_main:
                        self._predump_shared_images(dataset)
                    self.ctx.barrier()
                t0 = time.monotonic()
                inferred = self.infer_dataset(dataset)
                t_infer = time.monotonic() - t0
                inferred = sum(self.ctx.gather(inferred))   # also the barrier before rank 0 merges
                if self.ctx.is_main:
                    self._record_engine()
                    outcomes[name] = self.finalize_dataset(dataset, inferred, t_infer)
                    _log_outcome(outcomes[name])
            self.ctx.barrier()
            if self.ctx.is_main:
                timings = self.meta["timings"]
                timings["finished"] = _now()
                timings["wall_s"] = round(time.monotonic() - t_start, 3)
                self._save_meta()
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit
            self._release()
        return RunResult(self.run_dir, self.run_name, outcomes, self.ctx.is_main)

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


class _BatchSized:
    """The engine, with ``generate``'s ``batch_size`` fixed to the run's ``--batch-size`` (the wrappers' ``_run``
    calls ``engine.generate`` without one)."""

    def __init__(self, engine, batch_size: int):
        self._engine = engine
        self._batch_size = batch_size

    def generate(self, samples, *args, **kwargs):
        kwargs.setdefault("batch_size", self._batch_size)
        return self._engine.generate(samples, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._engine, name)


# --------------------------------------------------------------------------------------------------- helpers
def default_batch_size(device: str | None, engine=None) -> int:
    """8 on CUDA; 1 on CPU, where a padded batch makes SDPA fall back to its slow masked path."""
    if engine is not None:
        return 8 if str(engine.device).startswith("cuda") else 1
    if device is not None:
        return 8 if str(device).startswith("cuda") else 1
    import torch

    return 8 if torch.cuda.is_available() else 1


def _image_paths(message) -> str:
    return ";".join(str(x["value"]) for x in message if x.get("type") == "image")


def _reason(stage: str, exc: BaseException) -> str:
    text = failure_reason(exc)
    if _is_decompression_bomb(exc):
        text = "image over Pillow's pixel limit (raise it with --max-image-pixels N, 0 = no limit): " + text
    elif _is_oom(exc):
        text = "oom even with the fewest tiles: " + text
    return f"{stage}: {type(exc).__name__}: {text}"[:500]


def _is_decompression_bomb(exc: BaseException) -> bool:
    from PIL import Image

    return isinstance(exc, Image.DecompressionBombError)


class _Noted:
    """An answer with a note for the record's ``reason`` (a sample retried with fewer tiles after OOM)."""

    def __init__(self, text: str, note: str):
        self.text, self.note = text, note


def fewer_tiles(setting):
    """The tile setting with every maximum halved (minimum lowered to fit), or None when it is already 1 tile."""
    if setting.kind == "msac":
        if setting.max_num <= 1 and setting.max_num2 <= 1:
            return None
        max1, max2 = max(1, setting.max_num // 2), max(1, setting.max_num2 // 2)
        return dataclasses.replace(setting, min_num=min(setting.min_num, max1), max_num=max1,
                                   min_num2=min(setting.min_num2, max2), max_num2=max2)
    if setting.max_num <= 1:
        return None
    max1 = max(1, setting.max_num // 2)
    return dataclasses.replace(setting, min_num=min(setting.min_num, max1), max_num=max1)


def duplicate_positions(index) -> set[int]:
    """Row positions whose index already appeared on an earlier row."""
    seen: set[str] = set()
    dups: set[int] = set()
    for pos, value in enumerate(index):
        key = index_key(value)
        if key in seen:
            dups.add(pos)
        seen.add(key)
    return dups


def _is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    return "out of memory" in str(exc).lower()


def _empty_cuda_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def _log_outcome(o: DatasetOutcome) -> None:
    head = "n/a" if math.isnan(o.headline) else f"{o.headline:.4g}"
    logger.info("%s: headline %s (%d rows, %d inferred now, %d failed)", o.dataset, head, o.rows, o.inferred,
                o.failed)


_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def xlsx_text(text: str) -> str:
    """The prediction as an xlsx cell can hold it: XML-illegal control characters dropped (xlsxwriter would write
    them as literal '_x0008_' text, which is what vlmeval would then score)."""
    return _XML_ILLEGAL.sub("", text)


def write_xlsx(data, path: Path) -> None:
    """``data.to_excel`` like vlmeval's ``dump`` (xlsxwriter), but text stays text: no formula, URL or number
    conversion (a prediction starting with '=' or 'http' would otherwise be mangled or dropped), atomically."""
    import pandas as pd

    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.xlsx")
    options = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
    try:
        with pd.ExcelWriter(tmp, engine="xlsxwriter", engine_kwargs={"options": options}) as writer:
            data.to_excel(writer, index=False)
        os.replace(tmp, path)
    except BaseException as exc:   # disk full (ENOSPC / EFBIG): no .tmp file left behind
        tmp.unlink(missing_ok=True)
        if exc.args and isinstance(exc.args[0], OSError):   # xlsxwriter's FileCreateError wraps the OSError
            raise exc.args[0] from None
        raise


def check_xlsx_roundtrip(path: Path, predictions: list) -> None:
    """Warn when vlmeval's ``load`` of the xlsx does not give back the predictions we wrote."""
    import pandas as pd
    from vlmeval.smp import load

    back = load(str(path))["prediction"].tolist()

    def norm(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else str(v)

    bad = [i for i, (a, b) in enumerate(zip(predictions, back)) if norm(a) != norm(b)]
    if bad or len(back) != len(predictions):
        logger.warning("%s: %d prediction(s) changed in the xlsx round trip (first row %s); vlmeval scores the "
                       "xlsx text", path.name, len(bad), bad[:1])


def run(opts: RunOptions, engine=None, ctx: DistContext | None = None) -> RunResult:
    """``minimonkey-eval run``: infer + score every dataset of ``opts`` into ``{work_dir}/{run_name}``."""
    from .vlmeval_adapter import make_runner  # vlmeval:NAME -> VLMEvalKit's wrapper instead of our engine

    own_ctx = ctx is None
    ctx = ctx or DistContext.from_env(opts.device)
    try:
        return make_runner(opts, ctx, engine).run()
    finally:
        if own_ctx:
            ctx.close()


def run_all(opts: RunOptions, engine=None, ctx: DistContext | None = None, report: bool = True):
    """``minimonkey-eval run-all``: ``run`` then (rank 0) the report over the whole work dir.

    Returns ``(RunResult, ReportPaths | None)``."""
    from .vlmeval_adapter import make_runner  # vlmeval:NAME -> VLMEvalKit's wrapper instead of our engine

    own_ctx = ctx is None
    ctx = ctx or DistContext.from_env(opts.device)
    try:
        result = make_runner(opts, ctx, engine).run()
        paths = None
        if report and ctx.is_main:
            from .report import build_report

            paths = build_report(result.run_dir.parent)
        return result, paths
    finally:
        if own_ctx:
            ctx.close()


def options_from_args(args, datasets: list[str]) -> RunOptions:
    names = {f.name for f in dataclasses.fields(RunOptions)}
    values = {k: v for k, v in vars(args).items() if k in names and k not in ("datasets", "argv")}
    for key in ("model_path", "data_root", "work_dir"):
        if values.get(key) is not None:
            values[key] = str(values[key])
    return RunOptions(datasets=datasets, argv=list(sys.argv), **values)
