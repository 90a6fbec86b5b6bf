"""The inference loop of a run: this rank's pending rows -> the backend's Jobs -> answered batches -> records.

:func:`infer_dataset` picks the rows still to do (not in any part file, or failed and to be retried; this rank's
share under torchrun: whole image groups per rank, ``DistContext.shard_groups``; the rows of one image next to each
other, ``distributed.group_order``), hands them to the backend's pipeline (``Backend.pipeline(...).run(rows,
describe)``: per row, on the pipeline's staging thread, ``Backend.describe`` builds VLMEvalKit's message and the
Job), and appends each
answered batch to the prediction store at once (append + fsync), so an interrupted run loses at most the batches in
flight and a rerun infers exactly the missing indices. Every record is stamped with its dataset and a fingerprint
of its row (``guards.stamp``) so resume trusts only its own lines.
"""
from __future__ import annotations

import contextlib
import logging
import sys

from minimonkey_eval.eval.run.distributed import group_order
from minimonkey_eval.eval.run.guards import DATASET_KEY, ROW_KEY, failure_reason, load_own, row_fingerprint
from minimonkey_eval.eval.run.options import RunError
from minimonkey_eval.eval.run.store import PredictionStore, index_key, make_record

logger = logging.getLogger(__name__)

ABORT_AFTER_FAILURES = 32   # this many failed samples in a row before any success: a broken setup, not bad samples


def infer_dataset(dataset, backend, store: PredictionStore, ctx, keep_failed: bool = False, progress: bool = True,
                  desc: str = "", profile=None, groups=None, grouped: bool = True) -> int:
    """This rank's pending rows of ``dataset`` answered by ``backend`` into ``store``; how many were inferred.

    ``groups``: the image group of every row position (``datasets.image_groups.row_groups``; None: every row alone):
    a group stays on one rank and, with ``grouped``, its rows are asked one after the other (else in dataset
    order)."""
    from tqdm import tqdm

    name = dataset.dataset_name
    done = load_own(store, dataset)
    if not keep_failed:
        done = {k: r for k, r in done.items() if not r.get("failed")}   # retried, like VLMEvalKit
    data = dataset.data
    dups = duplicate_positions(data["index"])
    mine = ctx.shard(len(data)) if groups is None else ctx.shard_groups(groups)
    pending = [p for p in mine if p not in dups and index_key(data.iloc[p]["index"]) not in done]
    if not pending:
        return 0
    if grouped and groups is not None:
        pending = group_order(pending, groups)
    answerer = backend.pipeline(dataset, profile)   # loads the model here: a loading error is the run's
    if ctx.world_size > 1:
        desc += f" [rank {ctx.rank}/{ctx.world_size}]"

    def describe(line):
        fingerprint = row_fingerprint(line)   # stamped on the record: resume trusts only its own rows
        job = backend.describe(dataset, line)
        job.extra["row"] = fingerprint
        return job

    ok, failed_in_a_row = 0, 0
    rows = (data.iloc[p] for p in pending)
    with store.writer(ctx.rank) as writer, _closing(answerer.run(rows, describe)) as batches, \
            tqdm(total=len(pending), desc=desc, unit="sample", dynamic_ncols=True, file=sys.stderr,
                 disable=not progress) as bar:
        for batch in batches:
            records = [record_for(job, name) for job in batch]
            writer.append(records)
            bar.update(len(records))
            for r in records:
                ok, failed_in_a_row = (ok, failed_in_a_row + 1) if r["failed"] else (ok + 1, 0)
            if not ok and failed_in_a_row >= ABORT_AFTER_FAILURES:
                raise RunError(f"{name}: the first {failed_in_a_row} samples all failed ({records[-1]['reason']}); "
                               "stopping - fix the cause and rerun (failed samples are retried)")
    return len(pending)


def record_for(job, dataset_name: str) -> dict:
    """The prediction record of an answered (or failed) Job."""
    images = _image_paths(job.extra.get("message") or [])
    stamp = {DATASET_KEY: dataset_name, ROW_KEY: job.extra.get("row")}
    if job.error is not None:
        return make_record(job.key, "", True, failed_sample_reason(job.failed_at, job.error), image_path=images,
                           **stamp)
    stats = job.extra.get("stats") or {}   # visual/prompt/generated tokens, latency_s, batch (sweep)
    reuse = job.extra.get("reuse")         # images / tiles / ViT passes / prefill tokens (models.reuse.counts)
    if reuse is not None:
        stats = {**stats, "reuse": {k: int(v) for k, v in reuse.items()}}
    return make_record(job.key, job.answer, reason=job.note, image_path=images, **stamp, **stats)


def failed_sample_reason(stage: str, exc: BaseException) -> str:
    """A failed sample's reason: the stage, the exception and, for the known causes, what to do."""
    from PIL import Image

    from minimonkey_eval.models.planning import is_oom

    text = failure_reason(exc)
    if isinstance(exc, Image.DecompressionBombError):
        text = "image over Pillow's pixel limit (raise it with --max-image-pixels N, 0 = no limit): " + text
    elif is_oom(exc):
        text = "oom even with the fewest tiles: " + text
    return f"{stage}: {type(exc).__name__}: {text}"[:500]


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


@contextlib.contextmanager
def _closing(batches):
    """The answerer's batches, closed when the loop ends early (its staging threads stop, the model's attention
    is put back) whether or not it is a generator."""
    try:
        yield batches
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _image_paths(message) -> str:
    return ";".join(str(x["value"]) for x in message if x.get("type") == "image")
