"""The batched, resumable, data-parallel benchmark runner behind ``minimonkey-eval run`` / ``run-all``.

Per dataset: vlmeval dataset object (offline TSV) -> ``inference.Inference`` (VLMEvalKit's prompts -> the one
pipeline, ``models.pipeline``: staging threads, length-bucketed batches, out-of-memory backoff) -> one JSON line
per sample appended and fsync'd (``predictions.py``) -> on rank 0: ``writers.Writers`` (VLMEvalKit's prediction
xlsx) -> ``scoring.score_dataset`` (vlmeval's own ``evaluate``) -> score sheets, per-sample sheet, ``summary.csv``,
``run.json`` (``runfolder.RunFolder``: identity, lock, the folder layout).

Resume: rerunning the same command skips every index already in a part file (any rank, any world size), so no
sample is inferred twice and none is lost.

Data parallel: under ``torchrun`` rank r infers rows r, r+W, r+2W, ... of each dataset into its own part
file; after a barrier rank 0 merges, scores once and writes every shared file.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import sys
import time
from pathlib import Path

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.backends import authors_setting
from minimonkey_eval.eval.run.distributed import DistContext
from minimonkey_eval.eval.run.guards import check_option_caps, judge_in_use, limit_rows, record_no_samples, score_or_fail
from minimonkey_eval.eval.run.inference import Inference, default_batch_size
from minimonkey_eval.eval.run.store import RunLock
from minimonkey_eval.models.registry import MINIMONKEY, get_model, model_names
from minimonkey_eval.eval.run.folder import (DatasetOutcome, RunError, RunFolder, RunOptions, RunResult, _now, default_run_name,
                        label_for, model_path_for, parse_datasets, split_tiles_option)
from minimonkey_eval.eval.run.writers import Writers

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- the runner
class Runner(RunFolder, Inference, Writers):
    """One run (one model setting, one run folder) over one or more datasets."""

    def __init__(self, opts: RunOptions, ctx: DistContext | None = None, engine=None):
        from minimonkey_eval.models.settings import parse
        from minimonkey_eval.models.tile_profiles import get_profile

        if opts.model not in model_names():
            raise RunError(f"unknown --model {opts.model!r}; choose one of {', '.join(model_names())}")
        if opts.batch_size is not None and opts.batch_size != "auto" and (
                not isinstance(opts.batch_size, int) or opts.batch_size < 1):
            raise RunError(f"--batch-size must be a positive integer or 'auto', got {opts.batch_size!r}")
        if opts.limit is not None and opts.limit < 1:
            raise RunError(f"--limit must be >= 1, got {opts.limit}")
        if opts.max_new_tokens is not None and opts.max_new_tokens < 1:
            raise RunError(f"--max-new-tokens must be >= 1, got {opts.max_new_tokens}")
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
                parse(self.override)
        except ValueError as exc:
            raise RunError(f"--tiles: {exc}") from None
        self.msac = self.tile_setting(None).kind == "msac"
        self.model_path = model_path_for(opts.model, opts.model_path)
        self.data_root = Path(opts.data_root).expanduser().resolve() if opts.data_root else None
        from minimonkey_eval.datasets.local import import_vlmeval

        import_vlmeval(self.data_root)   # first vlmeval import with $LMUData set: nothing lands in ~/LMUData
        self.run_name = opts.run_name or default_run_name(opts.model, self.msac, opts.scm, self.profile,
                                                          self.override)
        if not re.fullmatch(r"[A-Za-z0-9._+=-]+", self.run_name) or self.run_name in (".", ".."):
            raise RunError(f"--run-name {self.run_name!r}: use letters, digits and ._+=- only")
        self.work_dir = Path(opts.work_dir).expanduser().resolve()
        self.run_dir = self.work_dir / self.run_name
        self.label = label_for(opts.model, self.msac, opts.scm is not None, self.profile, self.override)
        self._engine = engine
        self.batch_size = opts.batch_size or default_batch_size(self.ctx.device_for(opts.device), engine)
        self._vlm = None
        self._lock: RunLock | None = None
        self.meta: dict = {}


    # ---- model ------------------------------------------------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            from minimonkey_eval.models import Engine

            device = self.ctx.device_for(self.opts.device)
            dtype = self.opts.dtype or authors_setting.default_dtype(self.profile)
            self._engine = Engine.from_pretrained(self.model_path, dtype=dtype, device=device,
                                                  attn_implementation=self.opts.attn)
            self._engine.normalize_on_device = self.opts.normalize_on_device
        return self._engine

    @property
    def vlm(self):
        if self._vlm is None:
            from minimonkey_eval.eval.backends.engine import InternVL2VLM, MiniMonkeyVLM

            common = dict(tile_profile=self.profile, tiles=self.override, scm=self.opts.scm,
                          engine=self.engine, max_new_tokens=self.opts.max_new_tokens,
                          model_path=str(self.model_path))
            if get_model(self.opts.model).msac_native:
                self._vlm = MiniMonkeyVLM(model_name=self.opts.model, **common)
            else:
                self._vlm = InternVL2VLM(model_name=self.opts.model, msac=self.opts.msac, **common)
        return self._vlm


    def _load(self, name: str):
        from minimonkey_eval.datasets.local import DataError, load_dataset

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


    def finalize_dataset(self, dataset, inferred: int, t_infer: float) -> DatasetOutcome:
        from minimonkey_eval.eval import scoring

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

    # ---- main -------------------------------------------------------------------------------------------------
    def run(self, profile=None) -> RunResult:
        """Infer (and with ``opts.score``, score) every dataset; ``profile`` (bench) times the inference."""
        from minimonkey_eval.models.identity import checkpoint_fingerprint, checkpoint_identity

        self.checkpoint_files = checkpoint_identity(self.model_path)
        self.fingerprint = checkpoint_fingerprint(self.model_path, self.checkpoint_files)
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
                # (subclasses may override infer_dataset(dataset) without the bench's profile)
                inferred = self.infer_dataset(dataset, profile) if profile is not None else self.infer_dataset(dataset)
                t_infer = time.monotonic() - t0
                if profile is not None:
                    profile.wall_s += t_infer
                inferred = sum(self.ctx.gather(inferred))   # also the barrier before rank 0 merges
                if self.ctx.is_main:
                    self._record_engine()
                    if self.opts.score:
                        outcomes[name] = self.finalize_dataset(dataset, inferred, t_infer)
                        _log_outcome(outcomes[name])
                    else:
                        records = self.merged(dataset)
                        outcomes[name] = DatasetOutcome(name, len(records), inferred,
                                                        sum(bool(r.get("failed")) for r in records))
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


def _log_outcome(o: DatasetOutcome) -> None:
    head = "n/a" if math.isnan(o.headline) else f"{o.headline:.4g}"
    logger.info("%s: headline %s (%d rows, %d inferred now, %d failed)", o.dataset, head, o.rows, o.inferred,
                o.failed)


def run(opts: RunOptions, engine=None, ctx: DistContext | None = None) -> RunResult:
    """``minimonkey-eval run``: infer + score every dataset of ``opts`` into ``{work_dir}/{run_name}``."""
    from minimonkey_eval.eval.backends.vlmeval_wrapper import make_runner  # vlmeval:NAME -> VLMEvalKit's wrapper instead of our engine

    own_ctx = ctx is None
    ctx = ctx or DistContext.from_env(opts.device)
    try:
        return make_runner(opts, ctx, engine).run()
    finally:
        if own_ctx:
            ctx.close()


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