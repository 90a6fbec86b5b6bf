"""The batched, resumable, data-parallel benchmark runner behind ``minimonkey-eval run`` / ``run-all``.

:class:`Runner` is composed of a run folder (``folder.RunFolder``: lock and run record, names from
``layout.RunLayout``), the prediction store (``store``), the writers (``writers.Writers``) and a backend
(``backend.Backend``: the model, handed in; ``eval.launch`` picks it). Per dataset: vlmeval dataset object (offline
TSV) -> ``inference.infer_dataset`` (the backend's Jobs and pipeline -> one JSON line per sample appended and
fsync'd) -> on rank 0: VLMEvalKit's prediction xlsx -> ``scoring.score_dataset`` (vlmeval's own ``evaluate``) ->
score sheets, per-sample sheet, ``summary.csv`` and the run record.

Resume: rerunning the same command skips every index already in a part file (any rank, any world size), so no
sample is inferred twice and none is lost.

Data parallel: under ``torchrun`` every rank infers whole image groups of each dataset (the questions about one
image on one rank, balanced by count: ``distributed.assign_ranks``; rows with no shared image are VLMEvalKit's
``i % W``) into its own part file; after a barrier rank 0 merges, scores once and writes every shared file.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.run.backend import Backend
from minimonkey_eval.eval.run.distributed import DistContext
from minimonkey_eval.eval.run.folder import RunFolder, git_commit, utc_now, versions
from minimonkey_eval.eval.run.guards import judge_in_use, limit_rows, record_no_samples, score_or_fail
from minimonkey_eval.eval.run.inference import infer_dataset
from minimonkey_eval.eval.run.options import (
    DatasetOutcome,
    RunError,
    RunOptions,
    RunResult,
    check_options,
    check_run_name,
    options_from_args,
    parse_datasets,
    show_progress,
)
from minimonkey_eval.eval.run.store import PredictionStore
from minimonkey_eval.eval.run.writers import Writers
from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.eval.runfiles.record import RunRecord
from minimonkey_eval.process_state import pillow_pixel_limit

logger = logging.getLogger(__name__)

__all__ = ["DatasetOutcome", "RunError", "RunOptions", "RunResult", "Runner", "options_from_args"]


class Runner:
    """One run (one backend, one run folder) over one or more datasets; :meth:`run` runs it once."""

    def __init__(self, opts: RunOptions, backend: Backend, ctx: DistContext | None = None):
        from minimonkey_eval.datasets.local import import_vlmeval

        check_options(opts)
        self.opts = opts
        self.backend = backend
        self.ctx = ctx or DistContext()
        self.datasets = parse_datasets(opts.datasets, allow_all=True)
        self.data_root = Path(opts.data_root).expanduser().resolve() if opts.data_root else None
        import_vlmeval(self.data_root)   # first vlmeval import with $LMUData set: nothing lands in ~/LMUData
        self.run_name = check_run_name(opts.run_name or backend.default_run_name)
        self.layout = RunLayout(Path(opts.work_dir).expanduser().resolve() / self.run_name)
        self.folder = RunFolder(self.layout, overwrite=opts.overwrite)
        self.writers = Writers(self.layout, backend.prediction_prefix or opts.model,
                               {"run_name": self.run_name, "model": opts.model, "label": backend.label,
                                "demo": bool(opts.demo)})
        self.record: RunRecord | None = None
        self.fingerprint: str | None = None
        self.checkpoint_files: dict = {}
        self._judge = None

    @property
    def run_dir(self) -> Path:
        return self.layout.run_dir

    # ---- the run record -------------------------------------------------------------------------------------------
    def fresh_record(self) -> RunRecord:
        """This invocation's run record before anything ran (identity, provenance, settings)."""
        opts, backend = self.opts, self.backend
        now = utc_now()
        record = RunRecord(
            run_name=self.run_name, label=backend.label, **backend.identity(), checkpoint_sha256=self.fingerprint,
            model_path=str(backend.model_path), checkpoint_files=dict(self.checkpoint_files),
            git_commit=git_commit(), versions=versions(), argv=list(opts.argv or sys.argv),
            data_root=str(self.data_root) if self.data_root else None, judge=opts.judge,
            batch_size=backend.batch_size, limit=opts.limit, world_size=self.ctx.world_size,
            prediction_prefix=backend.prediction_prefix,
            timings={"first_started": now, "started": now, "finished": None, "datasets": {}},
            demo_note=(f"demo: random tiny model; max_new_tokens capped at {opts.max_new_tokens}; numbers are "
                       "meaningless") if opts.demo else None)
        record.update(backend.record_fields())
        return record

    def open_folder(self) -> RunRecord:
        """Rank 0: lock the run folder, check or reset its run record, write the starting one."""
        tiles = {ds: self.backend.tiles_record(ds) for ds in self.datasets}
        self.record = self.folder.open(self.fresh_record(), tiles)
        return self.record

    def _record_loaded(self) -> None:
        """What is known once the model ran (dtype, device, parameters); the options' dtype/device otherwise."""
        self.record.update(self.backend.record_fields())
        if not self.record.dtype:
            self.record.dtype, self.record.device = self.opts.dtype, self.opts.device

    # ---- one dataset --------------------------------------------------------------------------------------------
    def load(self, name: str):
        from minimonkey_eval.datasets.local import DataError, load_dataset

        try:
            dataset = load_dataset(name, data_root=self.data_root, allow_download=self.opts.allow_download,
                                   refresh_images=self.ctx.is_main)
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

    def infer_dataset(self, dataset, profile=None) -> int:
        """This rank's pending rows -> appended records. Returns how many samples were inferred."""
        name = dataset.dataset_name
        grouped = self.opts.reuse and not self.opts.reference
        return infer_dataset(dataset, self.backend, PredictionStore(self.run_dir, name), self.ctx,
                             keep_failed=self.opts.keep_failed, progress=show_progress(self.opts),
                             desc=f"{self.run_name}/{name}", profile=profile,
                             groups=self.image_groups(dataset) if grouped or self.ctx.world_size > 1 else None,
                             grouped=grouped)

    def image_groups(self, dataset) -> list | None:
        """The image group of every row (the TSV's references and repeated image paths; ``datasets.image_groups``):
        a group stays on one rank and is asked in one go. None when the TSV cannot say (every row alone); under
        torchrun, when it cannot say on any rank (all ranks must shard alike)."""
        from minimonkey_eval.datasets.image_groups import row_groups

        try:
            groups = row_groups(dataset)
        except Exception as exc:  # noqa: BLE001 - only the grouping is lost
            logger.warning("%s: image groups not read from the TSV (%s: %s); rows are sharded one by one",
                           dataset.dataset_name, type(exc).__name__, exc)
            groups = None
        if self.ctx.world_size > 1 and not all(self.ctx.gather(groups is not None)):
            return None
        return groups

    def finalize_dataset(self, dataset, inferred: int, t_infer: float) -> DatasetOutcome:
        from minimonkey_eval.eval import scoring

        name = dataset.dataset_name
        t0 = time.monotonic()
        records = self.writers.merged(dataset)
        if not records:
            return self.finalize_empty(dataset, inferred)
        failed = sum(bool(r.get("failed")) for r in records)
        if records and failed == len(records):
            raise RunError(f"{name}: all {failed} samples failed (e.g. {records[0]['reason']}); nothing to score - "
                           "fix the cause and rerun (failed samples are retried)")
        xlsx = self.writers.write_prediction_xlsx(dataset, records)
        judge, judge_note = self.judge_for(name)
        result = score_or_fail(name, scoring.score_dataset, name, xlsx, judge=judge, data_root=self.data_root,
                               progress=show_progress(self.opts))
        if judge_note:
            result.notes = "; ".join(x for x in (judge_note, result.notes) if x)
            logger.warning("%s: %s", name, judge_note)
        score_csv, score_xlsx = scoring.write_score_sheets(result, self.run_dir)
        samples = self.writers.write_samples(dataset, records, result.per_sample)
        outcome = DatasetOutcome(name, len(records), inferred, failed, float(result.headline),
                                 {"predictions": str(xlsx), "score_csv": str(score_csv),
                                  "score_xlsx": str(score_xlsx), "samples": str(samples)})
        if failed:
            logger.warning("%s: %d of %d samples failed (see %s)", name, failed, len(records), samples.name)
        record = self.record
        if name not in record.datasets:
            record.datasets.append(name)
        record.tiles[name] = self.backend.tiles_record(name)
        record.results[name] = {"rows": len(records), "failed": failed,
                                "headline": None if math.isnan(outcome.headline) else outcome.headline,
                                "extraction": result.extraction, "notes": result.notes,
                                "judge": (judge if isinstance(judge, str) or judge is None
                                          else dict(judge).get("model")),
                                "limit": self.opts.limit, **self.backend.result_fields(records)}
        record.timings["datasets"][name] = {"inference_s": round(t_infer, 3), "inferred": inferred,
                                            "scoring_s": round(time.monotonic() - t0, 3)}
        self.writers.write_summary()
        self.folder.save(record)
        return outcome

    def finalize_empty(self, dataset, inferred: int) -> DatasetOutcome:
        """No rows: 'no samples', no headline (never a 0.0 on the summary)."""
        record_no_samples(self.record, self.layout, dataset.dataset_name, self.opts.limit)
        self.writers.write_summary()
        self.folder.save(self.record)
        return DatasetOutcome(dataset.dataset_name, 0, inferred)

    def judge_for(self, name: str):
        """(judge handed to vlmeval, note): the judge actually usable, decided once per run."""
        if self._judge is None:
            self._judge = judge_in_use(self.opts.judge)
        return self._judge

    # ---- main -------------------------------------------------------------------------------------------------
    def run(self, profile=None) -> RunResult:
        """Infer (and with ``opts.score``, score) every dataset; ``profile`` (bench) times the inference."""
        from minimonkey_eval.models.identity import checkpoint_fingerprint, checkpoint_identity

        try:
            self.checkpoint_files = checkpoint_identity(self.backend.model_path)
            self.fingerprint = checkpoint_fingerprint(self.backend.model_path, self.checkpoint_files)
            error = None
            if self.ctx.is_main:
                try:
                    self.open_folder()
                except UserFacingError as exc:
                    error = str(exc)
            error = self.ctx.broadcast(error)
            if error:
                raise RunError(error)
            with pillow_pixel_limit(self.opts.max_image_pixels):
                outcomes = self._run_datasets(profile)
        finally:
            self.folder.release()   # never leave the lock held (also through the Python API)
            self.backend.release()
        return RunResult(self.run_dir, self.run_name, outcomes, self.ctx.is_main)

    def _run_datasets(self, profile) -> dict[str, DatasetOutcome]:
        t_start = time.monotonic()
        outcomes: dict[str, DatasetOutcome] = {}
        for name in self.datasets:
            dataset = self.load(name)
            if self.ctx.world_size > 1:
                if self.ctx.is_main:
                    self._predump_shared_images(dataset)
                self.ctx.barrier()
            t0 = time.monotonic()
            inferred = self.infer_dataset(dataset, profile)
            t_infer = time.monotonic() - t0
            if profile is not None:
                profile.wall_s += t_infer
            inferred = sum(self.ctx.gather(inferred))   # also the barrier before rank 0 merges
            if self.ctx.is_main:
                self._record_loaded()
                if self.opts.score:
                    outcomes[name] = self.finalize_dataset(dataset, inferred, t_infer)
                    _log_outcome(outcomes[name])
                else:
                    records = self.writers.merged(dataset)
                    outcomes[name] = DatasetOutcome(name, len(records), inferred,
                                                    sum(bool(r.get("failed")) for r in records))
        self.ctx.barrier()
        if self.ctx.is_main:
            timings = self.record.timings
            timings["finished"] = utc_now()
            timings["wall_s"] = round(time.monotonic() - t_start, 3)
            self.folder.save(self.record)
        return outcomes


def _log_outcome(o: DatasetOutcome) -> None:
    head = "n/a" if math.isnan(o.headline) else f"{o.headline:.4g}"
    logger.info("%s: headline %s (%d rows, %d inferred now, %d failed)", o.dataset, head, o.rows, o.inferred,
                o.failed)
