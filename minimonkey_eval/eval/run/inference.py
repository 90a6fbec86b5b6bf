"""The inference loop of a run: this rank's pending rows -> Jobs -> the one pipeline -> records, appended per batch.

Per row, on the pipeline's staging thread, :meth:`Inference.describe_row` builds VLMEvalKit's message (the
wrapper's or the dataset's ``build_prompt``; vlmeval dumps the image file) and the wrapper's sample + tile setting.
``models.pipeline.Pipeline`` then buckets, tiles, answers (with its out-of-memory backoff) and hands back each batch;
its records go to the prediction store at once (append + fsync), so an interrupted run loses at most the batches in
flight and a rerun infers exactly the missing indices. ``--batch-size auto`` sizes each batch from free device
memory and its longest estimated prompt. ``RunOptions.reference`` (``bench``) runs the same loop in the
VLMEvalKit-style reference mode (``reference.reference_pipeline``: batch 1, no overlap, vlmeval's tiler, eager).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from functools import partial

from minimonkey_eval.models.pipeline import Job, Pipeline, default_threads, is_oom
from minimonkey_eval.datasets.validate import check_message_images, guard_dump_targets
from minimonkey_eval.eval.run.guards import DATASET_KEY, ROW_KEY, failure_reason, load_own, row_fingerprint
from minimonkey_eval.eval.run.store import PredictionStore, index_key, make_record
from minimonkey_eval.eval.run.folder import RunError

logger = logging.getLogger(__name__)

ABORT_AFTER_FAILURES = 32   # this many failed samples in a row before any success: a broken setup, not bad samples


class Inference:
    """Inference half of ``runner.Runner`` (needs its ``opts``, ``ctx``, ``engine``, ``vlm``, ``batch_size``)."""

    def message_for(self, dataset, line) -> list[dict]:
        """The message VLMEvalKit's infer_data builds for a row (dataset prompt if forced or not custom)."""
        name = dataset.dataset_name
        if getattr(dataset, "force_use_dataset_prompt", False) or not self.vlm.use_custom_prompt(name):
            return dataset.build_prompt(line)
        return self.vlm.build_prompt(line, dataset=name)

    def message_job(self, dataset, line) -> Job:
        """A row as a Job holding VLMEvalKit's message (images dumped and checked) and the row's fingerprint; a
        failure is stage 'prompt'. KeyboardInterrupt / SystemExit stop the run (what is done is saved)."""
        job = Job(key=line["index"])
        job.extra["row"] = row_fingerprint(line)   # stamped on the record: resume trusts only its own rows
        try:
            guard_dump_targets(dataset, line)
            job.extra["message"] = self.message_for(dataset, line)
            check_message_images(job.extra["message"])
        except Exception as exc:  # noqa: BLE001 - recorded per sample (corrupt image, bad row)
            job.fail("prompt", exc)
        return job

    def describe_row(self, dataset, line) -> Job:
        """A row as a pipeline Job: images, question, tile setting, max_new_tokens; a failure names its stage
        ('prompt': the message could not be built; 'prepare': the wrapper could not make the sample)."""
        job = self.message_job(dataset, line)
        if job.error is not None:
            return job
        try:
            (images, question), setting, max_new = self.vlm.describe(job.extra["message"], dataset.dataset_name)
        except Exception as exc:  # noqa: BLE001
            return job.fail("prepare", exc)
        job.images, job.question, job.tiling, job.max_new_tokens = list(images), question, setting, max_new
        return job

    def record_for(self, job: Job, dataset_name: str) -> dict:
        images = _image_paths(job.extra.get("message") or [])
        stamp = {DATASET_KEY: dataset_name, ROW_KEY: job.extra.get("row")}
        if job.error is not None:
            return make_record(job.key, "", True, _reason(job.failed_at, job.error), image_path=images, **stamp)
        stats = job.extra.get("stats") or {}   # visual/prompt/generated tokens, latency_s, batch (sweep)
        return make_record(job.key, job.answer, reason=job.note, image_path=images, **stamp, **stats)

    @property
    def stage_threads(self) -> int:
        """Threads tiling and tokenizing: ``--stage-threads``, else ``pipeline.default_threads()`` (one per spare
        core of this rank's share of the machine, at most 8)."""
        if self.opts.stage_threads is not None:
            return max(1, self.opts.stage_threads)
        return default_threads()

    def pipeline(self, profile=None) -> Pipeline:
        from minimonkey_eval.eval.backends import authors_setting

        options = dict(scm=self.opts.scm)
        if not authors_setting.retries_fewer_tiles(self.profile):   # the authors' setting keeps its tiles
            options["single_oom"] = authors_setting.oom_fallback
        if self.opts.reference:
            from minimonkey_eval.eval.backends.reference import reference_pipeline

            return reference_pipeline(self.engine, profile=profile, **options)
        return Pipeline(self.engine, batch_size=self.batch_size, threads=self.stage_threads,
                        overlap=self.opts.prefetch, profile=profile, **options)

    def _attention(self):
        if not self.opts.reference:
            return contextlib.nullcontext()
        from minimonkey_eval.eval.backends.reference import attention_implementation

        return attention_implementation(self.engine.model, "eager")

    def infer_dataset(self, dataset, profile=None) -> int:
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
        ok, failed_in_a_row = 0, 0
        self.vlm  # noqa: B018 - load the model here: a loading error is the run's, not a sample's
        rows = (data.iloc[p] for p in pending)
        with store.writer(self.ctx.rank) as writer, self._attention(), \
                tqdm(total=len(pending), desc=desc, unit="sample", dynamic_ncols=True, file=sys.stderr,
                     disable=os.environ.get("MINIMONKEY_NO_PROGRESS") == "1") as bar:
            for batch in self.pipeline(profile).run(rows, partial(self.describe_row, dataset)):
                records = [self.record_for(job, name) for job in batch]
                writer.append(records)
                bar.update(len(records))
                for r in records:
                    ok, failed_in_a_row = (ok, failed_in_a_row + 1) if r["failed"] else (ok + 1, 0)
                if not ok and failed_in_a_row >= ABORT_AFTER_FAILURES:
                    raise RunError(f"{name}: the first {failed_in_a_row} samples all failed ({records[-1]['reason']}); "
                                   "stopping - fix the cause and rerun (failed samples are retried)")
        return len(pending)


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
    elif is_oom(exc):
        text = "oom even with the fewest tiles: " + text
    return f"{stage}: {type(exc).__name__}: {text}"[:500]


def _is_decompression_bomb(exc: BaseException) -> bool:
    from PIL import Image

    return isinstance(exc, Image.DecompressionBombError)


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
