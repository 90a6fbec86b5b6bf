"""The one inference pipeline: ``run``, ``run-all``, ``chat``, ``Engine.generate`` and ``bench`` all go through it.

Work items are :class:`Job` s (one sample: images, question, tiling, ``max_new_tokens``). :class:`Pipeline` takes
sources in *windows*; per window, on a staging thread: ``describe`` each source into a Job (sequentially: the
runner builds VLMEvalKit prompts and dumps images there), estimate its prompt length from the image headers
(:func:`estimate_tokens`: the tile count follows from the image size alone), bucket the window into batches of
similar length, longest first (:func:`plan_batches`: padding stays small and an out-of-memory shows up in the first
batch, not after an hour), and tile + tokenize each batch's samples on a pool of threads, at most
:data:`AHEAD` batches ahead of the device. The calling thread answers each batch (``Engine.generate_prepared``) and
hands it back, so the caller writes predictions per sample as batches finish. One out-of-memory backoff
(:meth:`Pipeline._answer`): split the batch in halves; a single sample is re-tiled with every tile maximum halved
(``job.note = 'oom: retried with tiles ...'``) until it fits or is down to one tile (then ``job.error``).

Reuse (``reuse=True``, the default; ``models.reuse``): jobs about the same image (``Job.image_key``, else the content
hash of the image bytes; same tiling; same place of the image in the prompt) are planned into one batch (a group
larger than the batch size into consecutive batches), tiled once, encoded by the ViT once (features kept across the
window's batches until the group's last question) and, SCM off, their common prompt prefix is prefilled once.
Counters per job (``Job.vit_passes``, ``vit_tiles``, ``prefill_tokens``, ``prompt_tokens``; all in
``Job.extra['reuse']``) and summed (``Pipeline.stats``, a ``reuse.ReuseStats``). A full window takes the next jobs
while they continue its last image (up to :data:`WINDOW_STRETCH` windows), so consecutive questions about one image
are not cut in two; with ``batch_size='auto'`` on CPU a group sharing a prompt prefix fills one batch of up to
``planning.CPU_AUTO_GROUP_SIZE`` (the prefix is prefilled once, unpadded). ``reuse=False`` answers every job on its
own, as before.

``batch_size='auto'``: per batch, from free device memory and the batch's longest estimated prompt
(:func:`auto_batch_size`). ``overlap=False, bucket=False, batch_size=1, window=1`` is the VLMEvalKit-style reference
order: one sample at a time, staged on the calling thread, in input order.

Threads, not worker processes, stage the samples: they measured faster. ``scripts/profile_staging.py`` (MSAC
14-23/5-15 on 2000x2600 DocVQA-like JPEGs, ~33 tiles each, 6 pages, 2 workers, 1 torch thread per worker, on this
project's 2-core CI box shared with other jobs, load average 4-6, so noisy), pages/s, serial / 2 threads /
2 processes: float32 tiles 2.13 / 2.88 / 1.42, uint8 tiles 2.42 / 1.75 / 1.52. Pillow's decode/resize and torch's
conversion release the GIL, so threads overlap the pixel work as processes do, while a process must also pickle
each page's tiles back to the parent (~80 MB float32, ~20 MB uint8 per DocVQA page) and rebuild the tokenizer;
a thread hands over a pointer. Threads also let the runner build VLMEvalKit prompts (its dataset object) on the
staging thread, which a worker process could not share.

The engine package imports no vlmeval; this module imports torch, Pillow and the engine only.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence

from PIL import Image

from minimonkey_eval.models.planning import (
    CPU_AUTO_BATCH_SIZE,
    CPU_AUTO_GROUP_SIZE,
    Job,
    Prepared,
    auto_batch_size,
    default_threads,
    empty_device_cache,
    estimate_tiles,
    estimate_tokens,
    fewer_tiles,
    image_size,
    is_oom,
    plan_batches,
)
from minimonkey_eval.models.reuse import FeatureCache, ReuseStats, prefix_length, share_key, vision_key
from minimonkey_eval.models.settings import ScmConfig

logger = logging.getLogger(__name__)

AHEAD = 2          # batches staged ahead of the device
MAX_WINDOW = 256   # sources described and bucketed together (bounded: predictions are written as batches finish)
WINDOW_STRETCH = 4  # with reuse, a full window takes up to this many times its size to keep its last image's group


# ---------------------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------------------
_DONE = object()


# Every staging thread a pipeline starts (the producer and its pool's workers), so that the CLI can tell after Ctrl-C
# whether one still runs (then it exits at once instead of waiting for a batch to finish staging).
_STAGING_THREADS: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()


def _register_thread() -> None:
    _STAGING_THREADS.add(threading.current_thread())


def staging_threads_alive() -> bool:
    """Whether a staging thread of any pipeline of this process is still running."""
    return any(t.is_alive() for t in list(_STAGING_THREADS))


class Batch(list):
    """A planned batch of Jobs (a list), with what reuse needs to know about the rest of its window: ``wanted``,
    the vision keys of its jobs that later batches of the window also use (their features are kept on the device),
    ``release``, the vision keys it is the last batch to stage (their tiles stop being shared), ``window``, the
    window's shared staging state."""

    def __init__(self, jobs=(), wanted=frozenset(), release=frozenset(), window=None):
        super().__init__(jobs)
        self.wanted, self.release, self.window = wanted, release, window


class _WindowStaging:
    """Per window: vision key -> Future of the first staged Prepared with that key (its tiles are shared)."""

    def __init__(self):
        self.leaders: dict = {}


class Pipeline:
    """Stage (threads) -> bucket -> answer (device) -> hand back, for one engine and one set of options.

    ``prepare(engine, job) -> Prepared`` tiles and tokenizes (default ``engine.prepare``; the reference mode passes
    VLMEvalKit's tiler). ``profile`` (``models.profile.Profile``) times staging waits and the engine's stages.
    ``reuse`` (default True): compute each image once (module docstring, ``models.reuse``); ``stats`` sums the
    counters of the answered jobs (``reuse.ReuseStats``)."""

    def __init__(self, engine, batch_size: int | str = 8, threads: int | None = None, overlap: bool = True,
                 bucket: bool = True, window: int | None = None, prepare: Callable | None = None,
                 scm: ScmConfig | None = None, profile=None,
                 single_oom: Callable[[BaseException], BaseException] | None = None, reuse: bool = True,
                 **generate_kwargs):
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or 'auto', got {batch_size!r}")
        self.engine = engine
        self.batch_size = batch_size
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self.overlap = overlap
        self.bucket = bucket
        fixed = batch_size if isinstance(batch_size, int) else 16
        self.window = max(1, window) if window is not None else min(MAX_WINDOW, max(16, 8 * fixed))
        self.prepare_fn = prepare or (lambda engine, job: engine.prepare(job.images, job.question, job.tiling))
        self.options = dict(scm=scm, **generate_kwargs)
        self.profile = profile
        self.single_oom = single_oom   # set: a sample out of memory alone fails with single_oom(exc), no fewer tiles
        self.reuse = bool(reuse)
        self.stats = ReuseStats()
        self.features = FeatureCache()

    # ---- staging (CPU) --------------------------------------------------------------------------------------------
    def _describe(self, source, describe: Callable) -> Job:
        try:
            job = describe(source)
        except Exception as exc:  # noqa: BLE001 - a per-sample failure (bad row, corrupt image)
            return Job(key=source).fail("describe", exc)
        if job.error is None:
            try:
                job.tokens = estimate_tokens(self.engine, job.images, job.question, job.tiling)
            except Exception as exc:  # noqa: BLE001 - unreadable image header, bad tile range
                job.fail("prepare", exc)
        if job.error is None and self.reuse and self.window > 1:   # a window of one shares nothing: no hashing
            self._keys(job)
        return job

    def _keys(self, job: Job) -> None:
        """The job's vision and sharing keys (none when its images cannot be read: it is then answered alone and
        its own staging reports the error)."""
        job.vision_key = job.share_key = None
        if not job.images or job.prepared is not None:
            return
        tiling = job.tiling or self.engine.default_tiling
        try:
            job.vision_key = vision_key(job.images, tiling, job.image_key)
            job.share_key = share_key(job.images, job.question, tiling, job.image_key)
        except Exception as exc:  # noqa: BLE001 - only an optimisation is lost
            logger.debug("no reuse key for sample %s: %s: %s", job.key, type(exc).__name__, exc)
            job.vision_key = job.share_key = None

    def _stage(self, job: Job) -> Job:
        if job.error is None:
            try:
                job.prepared = self.prepare_fn(self.engine, job)
                self.engine.check_length(job.prepared.input_ids, job.max_new_tokens)
            except Exception as exc:  # noqa: BLE001 - decode/tile/tokenize failure, a prompt too long
                job.fail("prepare", exc)
            else:
                if self.reuse and job.vision_key is not None:
                    job.prepared.vision_key = job.vision_key
        return job

    def _stage_group(self, jobs: list[Job], source: Future | None, publish: Future | None) -> None:
        """Stage the jobs of one vision key in a batch: the first tiles its images (or takes the tiles staged for an
        earlier batch of the window, ``source``), the others only tokenize their prompts. ``publish`` gets the
        Prepared whose tiles later batches share (None if none could be staged)."""
        base = None
        try:
            if source is not None:
                try:
                    base = source.result()
                except BaseException:  # noqa: BLE001 - cancelled at shutdown, or the leader's task failed
                    base = None
            for job in jobs:
                if job.error is not None:
                    continue
                if base is None:
                    self._stage(job)
                    if job.error is None:
                        base = job.prepared
                    continue
                try:
                    job.prepared = self.engine.prepare_shared(base, job.question)
                    self.engine.check_length(job.prepared.input_ids, job.max_new_tokens)
                except Exception as exc:  # noqa: BLE001 - tokenize failure of one sample, a prompt too long
                    job.fail("prepare", exc)
        finally:
            if publish is not None and not publish.done():
                publish.set_result(base)

    def _stage_tasks(self, batch: Batch) -> list[Callable[[], None]]:
        """Staging work for one batch, one task per vision key (jobs without a key: one task each). Runs on the
        producer thread, in batch order, so an earlier batch's leader is registered before a later batch looks."""
        if not self.reuse:
            return [lambda job=job: self._stage(job) for job in batch]
        tasks, by_key = [], {}
        for job in batch:
            if job.vision_key is None or job.error is not None:
                tasks.append(lambda job=job: self._stage(job))
            else:
                by_key.setdefault(job.vision_key, []).append(job)
        window = batch.window or _WindowStaging()
        for key, jobs in by_key.items():
            source = window.leaders.get(key)
            publish = None
            if source is None:
                publish = window.leaders[key] = Future()
            tasks.append(lambda jobs=jobs, source=source, publish=publish: self._stage_group(jobs, source, publish))
        for key in batch.release:
            window.leaders.pop(key, None)
        return tasks

    def _batch_size_for(self, max_new_tokens: int):
        if self.batch_size != "auto":
            return self.batch_size
        return lambda longest: auto_batch_size(self.engine, longest, max_new_tokens)

    def _group_size(self) -> int | None:
        """How many questions about one image a batch may hold beyond the batch size: on CPU with ``'auto'``,
        :data:`planning.CPU_AUTO_GROUP_SIZE` when their prompt prefix can be shared (reuse on, SCM off, plain
        greedy decoding), else None."""
        shares_prefix = self.reuse and self.options.get("scm") is None and \
            not any(v for k, v in self.options.items() if k != "scm")
        device = getattr(self.engine, "device", None)
        on_cpu = getattr(device, "type", "cpu") != "cuda"
        return CPU_AUTO_GROUP_SIZE if self.batch_size == "auto" and shares_prefix and on_cpu else None

    def _plan(self, jobs: list[Job]) -> list[Batch]:
        """Per ``max_new_tokens`` group the bucketed batches (jobs sharing an image kept together), then the jobs
        that failed already (nothing to compute; last, so that a window's successes are counted before its
        failures)."""
        groups: dict[int, list[Job]] = {}
        for job in jobs:
            if job.error is None:
                groups.setdefault(job.max_new_tokens, []).append(job)
        planned: list[list[Job]] = []
        for max_new, group in groups.items():
            keys = [j.share_key for j in group] if self.reuse else None
            for plan in plan_batches([j.tokens for j in group], self._batch_size_for(max_new), self.bucket, keys,
                                     group_size=self._group_size()):
                planned.append([group[i] for i in plan])
        failed = [j for j in jobs if j.error is not None]
        if failed:
            planned.append(failed)
        if not self.reuse:
            return [Batch(b) for b in planned]
        last: dict = {}
        for k, batch in enumerate(planned):
            for job in batch:
                if job.vision_key is not None and job.error is None:
                    last[job.vision_key] = k
        window = _WindowStaging()
        out = []
        for k, batch in enumerate(planned):
            keys = {j.vision_key for j in batch if j.vision_key is not None and j.error is None}
            out.append(Batch(batch, wanted=frozenset(key for key in keys if last[key] > k),
                             release=frozenset(key for key in keys if last[key] == k), window=window))
        return out

    def _windows(self, sources: Iterable, describe: Callable) -> Iterator[Batch]:
        """Sources described into windows of ``self.window`` jobs, each planned. With reuse a full window waits for
        the next job and takes it while it continues the window's last image (same vision key; up to
        ``WINDOW_STRETCH`` times the window), so that a group of consecutive questions is not cut in two."""
        stretch = self.reuse and self.window > 1
        window: list[Job] = []
        for source in sources:
            job = self._describe(source, describe)
            if stretch and len(window) >= self.window:
                last = window[-1]
                if not (len(window) < self.window * WINDOW_STRETCH and job.vision_key is not None
                        and job.vision_key == last.vision_key):
                    yield from self._plan(window)
                    window = []
            window.append(job)
            if not stretch and len(window) == self.window:
                yield from self._plan(window)
                window = []
        if window:
            yield from self._plan(window)

    def _produce(self, sources, describe, out: queue.Queue, pool: ThreadPoolExecutor | None, stop: threading.Event):
        """Staging thread: describe + plan, then tile each batch's samples on ``pool``; at most AHEAD batches queued."""
        try:
            for batch in self._windows(sources, describe):
                futures = [pool.submit(task) for task in self._stage_tasks(batch)]
                item = (batch, futures)
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            out.put((exc, None))

    def _staged(self, sources: Iterable, describe: Callable) -> Iterator[Batch]:
        """Batches with every job staged (``prepared`` or ``error``), in planned order."""
        profile = self.profile
        if not self.overlap:
            windows = self._windows(sources, describe)
            while True:
                t0 = time.perf_counter()
                batch = next(windows, None)
                if batch is None:
                    return
                for task in self._stage_tasks(batch):
                    task()
                if profile is not None:
                    profile.staging_wait_s += time.perf_counter() - t0
                yield batch
        out: queue.Queue = queue.Queue(maxsize=AHEAD)
        stop = threading.Event()
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="minimonkey-tile", initializer=_register_thread)
        producer = threading.Thread(target=self._produce, args=(sources, describe, out, pool, stop),
                                    name="minimonkey-stage", daemon=True)
        _STAGING_THREADS.add(producer)
        producer.start()
        try:
            while True:
                t0 = time.perf_counter()
                batch, futures = out.get()
                if batch is _DONE:
                    return
                if isinstance(batch, BaseException):
                    raise batch
                for future in futures:
                    future.result()
                if profile is not None:
                    profile.staging_wait_s += time.perf_counter() - t0
                yield batch
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    # ---- answering (device) ---------------------------------------------------------------------------------------
    def _reuse_options(self, wanted) -> dict:
        if not self.reuse:
            return {"reuse": False}
        return {"reuse": True, "features_cache": self.features, "wanted": wanted}

    def _answered(self, job: Job, answer: str, prepared) -> None:
        """Hand a job its answer, stats and reuse counters; its tiles are freed."""
        extra = getattr(prepared, "extra", {})
        job.extra["stats"] = extra.get("stats")
        counted = extra.get("reuse")
        if counted is not None:
            ids = getattr(prepared, "input_ids", None) or []
            job.extra["reuse"] = {**counted, "prefix_tokens": prefix_length(ids, self.engine.img_end_id)}
            job.vit_passes, job.vit_tiles = counted["vit_passes"], counted["vit_tiles"]
            job.prefill_tokens, job.prompt_tokens = counted["prefill_tokens"], counted["prompt_tokens"]
            self.stats.add(counted)
        job.answer, job.prepared = answer, None   # tiles freed as soon as the batch is answered

    def _answer(self, jobs: list[Job], wanted=frozenset()) -> None:
        """Answer ``jobs`` in one batch; on out-of-memory split in halves, a single sample gets fewer tiles; any
        other error is retried one sample at a time and then kept in that sample's ``error``. ``wanted``: vision
        keys whose features later calls still use (kept in ``self.features``)."""
        if not jobs:
            return
        try:
            answers = self.engine.generate_prepared([j.prepared for j in jobs], max_new_tokens=jobs[0].max_new_tokens,
                                                    profile=self.profile, **self._reuse_options(wanted),
                                                    **self.options)
            if len(answers) != len(jobs):
                raise RuntimeError(f"engine returned {len(answers)} answers for {len(jobs)} samples")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001
            if self.profile is not None:
                self.profile.failed_batches += 1
            if is_oom(exc):
                self.features.retain(())   # kept features give their memory back; later batches recompute
                empty_device_cache()
                if len(jobs) == 1:
                    return self._fewer_tiles(jobs[0], exc)
                half = len(jobs) // 2
                logger.warning("out of memory on a batch of %d; retrying as %d + %d", len(jobs), half,
                               len(jobs) - half)
                self._answer(jobs[:half], wanted | _vision_keys(jobs[half:]))
                self._answer(jobs[half:], wanted)
                return
            if len(jobs) == 1:
                logger.warning("sample %s failed: %s: %s", jobs[0].key, type(exc).__name__, exc)
                jobs[0].fail("generate", exc)
                return
            logger.warning("batch of %d failed (%s: %s); retrying one by one", len(jobs), type(exc).__name__, exc)
            for k, job in enumerate(jobs):
                self._answer([job], wanted | _vision_keys(jobs[k + 1:]))
            return
        for job, answer in zip(jobs, answers):
            self._answered(job, answer, job.prepared)

    def _fewer_tiles(self, job: Job, exc: BaseException) -> None:
        """One sample out of memory alone: re-tiled with the maxima halved until it fits (``job.note``), else the
        out-of-memory error is the sample's."""
        if self.single_oom is not None:
            job.fail("generate", self.single_oom(exc))
            return
        setting = job.tiling
        while True:
            smaller = fewer_tiles(setting)
            if smaller is None:
                job.fail("generate", exc)
                return
            setting = smaller
            logger.warning("out of memory on one sample (%s); retrying with tiles %s", job.key,
                           setting.describe())
            retry = dataclasses.replace(job, tiling=setting, prepared=None, error=None, failed_at="",
                                        vision_key=None, share_key=None)
            self._stage(retry)
            if retry.error is not None:
                job.fail(retry.failed_at, retry.error)
                return
            try:
                (answer,) = self.engine.generate_prepared([retry.prepared], max_new_tokens=job.max_new_tokens,
                                                          profile=self.profile, **self._reuse_options(frozenset()),
                                                          **self.options)
            except KeyboardInterrupt:
                raise
            except Exception as again:  # noqa: BLE001
                if not is_oom(again):
                    job.fail("generate", again)
                    return
                empty_device_cache()
                exc = again
                continue
            self._answered(job, answer, retry.prepared)
            job.note = f"oom: retried with tiles {setting.describe()}"
            return

    def run(self, sources: Iterable, describe: Callable) -> Iterator[list[Job]]:
        """Answered batches of Jobs (``answer`` or ``error`` set), as they finish; every source exactly once."""
        try:
            for batch in self._staged(sources, describe):
                self._answer([job for job in batch if job.error is None], getattr(batch, "wanted", frozenset()))
                self.features.retain(getattr(batch, "wanted", frozenset()))
                yield batch
        finally:
            self.features.retain(())


def _vision_keys(jobs: Sequence[Job]) -> frozenset:
    return frozenset(j.vision_key for j in jobs if j.vision_key is not None)


# ---------------------------------------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------------------------------------
Sample = tuple  # (images: Sequence[PIL.Image | path], question: str)


class SamplePreparationError(RuntimeError):
    """Decoding, tiling or tokenizing one sample failed; the message names the sample index and its images."""


def generate_stream(engine, samples: Sequence, tiling=None, batch_size: int | str = 8, max_new_tokens: int = 512,
                    threads: int | None = None, reuse: bool = True, stats: ReuseStats | None = None,
                    **options) -> Iterator[tuple[int, str]]:
    """Answer ``samples`` = [(images, question) or Prepared, ...], yielding ``(sample_index, answer)`` as batches
    finish (longest estimated prompt first). A sample that cannot be prepared raises
    :class:`SamplePreparationError` naming it; a generation error is raised as is. ``reuse``: questions about the
    same image share its work (``models.reuse``); ``stats`` (a ``reuse.ReuseStats``), if given, gets the counters."""
    tiling = tiling or engine.default_tiling
    prepared_given = [s for s in samples if isinstance(s, Prepared)]

    def describe(index: int) -> Job:
        sample = samples[index]
        if isinstance(sample, Prepared):
            return Job(key=index, tiling=tiling, max_new_tokens=max_new_tokens, tokens=len(sample.input_ids),
                       prepared=sample)
        images, question = sample
        for image in images:
            if not isinstance(image, (Image.Image, str, os.PathLike)):
                raise TypeError(f"images must be PIL images or paths, got {type(image).__name__}")
        return Job(key=index, images=list(images), question=question, tiling=tiling, max_new_tokens=max_new_tokens)

    def prepare(engine_, job: Job):
        return job.prepared if job.prepared is not None else engine_.prepare(job.images, job.question, job.tiling)

    pipeline = Pipeline(engine, batch_size=batch_size, threads=threads, prepare=prepare,
                        overlap=len(samples) > 1 and len(prepared_given) < len(samples), reuse=reuse, **options)
    if stats is not None:
        pipeline.stats = stats
    for batch in pipeline.run(range(len(samples)), describe):
        for job in batch:
            if job.error is not None:
                if job.failed_at == "generate":
                    raise job.error
                images = job.images or (samples[job.key][0] if not isinstance(samples[job.key], Prepared) else [])
                names = [f"<PIL {i.mode} {i.size}>" if isinstance(i, Image.Image) else str(i) for i in images]
                raise SamplePreparationError(f"sample {job.key} ({', '.join(names)}): "
                                             f"{type(job.error).__name__}: {job.error}") from job.error
            yield job.key, job.answer


def generate(engine, samples: Sequence, **kwargs) -> list[str]:
    """:func:`generate_stream` collected into input order (what ``Engine.generate`` returns)."""
    answers: list[str | None] = [None] * len(samples)
    for index, answer in generate_stream(engine, samples, **kwargs):
        answers[index] = answer
    return answers  # type: ignore[return-value]


__all__ = [
    "CPU_AUTO_BATCH_SIZE", "Batch", "Job", "Pipeline", "SamplePreparationError", "auto_batch_size", "default_threads",
    "estimate_tiles", "estimate_tokens", "fewer_tiles", "generate", "generate_stream",
    "image_size", "is_oom", "plan_batches",
]
