"""Overlapped preprocessing for the engine (the fast path).

:func:`generate_stream`: a ``torch.utils.data.DataLoader`` whose workers open each image once, tile it
(``tile_image``: MSAC or dynamic) and tokenize the prompt (the engine's own ``prepare`` code, run on a picklable
:class:`Preparer`), so that the CPU work of batch k+1 overlaps the GPU work of batch k. The unit of work is one
sample, so all workers cooperate on the next batch. Samples are bucketed by an *estimated* prompt length (the tile
count follows from the image size alone, :func:`estimate_tiles`) so that a batch holds prompts of similar length and
left padding stays small; batches run longest first (an out-of-memory shows up in the first batch, not after an
hour, and is handled by splitting the batch). Answers are yielded as ``(sample_index, answer)`` as batches finish.

The VLMEvalKit-style reference mode it is checked against lives in ``minimonkey_eval.reference`` (it imports
vlmeval); this module imports torch, Pillow and the engine only.
"""
from __future__ import annotations

import logging
import math
import pickle
import shutil
from typing import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .engine import Engine, Prepared, Tiling
from .chat_template import build_query
from .tiling import candidate_grids, closest_grid, second_scale_grids
from .tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

Sample = tuple  # (images: Sequence[PIL.Image | path], question: str)

# batch_size='auto' on a machine without CUDA: a fixed small batch (CPU matmuls gain little from batching).
CPU_AUTO_BATCH_SIZE = 4
AUTO_MAX_BATCH_SIZE = 64
AUTO_HEADROOM_BYTES = 1 << 30


# ---------------------------------------------------------------------------------------------------------------------
# Worker-side preparation
# ---------------------------------------------------------------------------------------------------------------------
class Preparer:
    """What a worker needs to turn ``(images, question)`` into a :class:`Prepared`: tokenizer, template, tiling.

    ``prepare`` / ``prepare_tiles`` *are* the engine's methods (the same code, bound to this light object), so the
    fast path cannot drift from ``Engine.prepare``. Picklable: if the tokenizer does not pickle, only the checkpoint
    path travels and each worker rebuilds the tokenizer from it.
    """

    prepare = Engine.prepare
    prepare_tiles = Engine.prepare_tiles

    def __init__(self, tokenizer, template, num_image_token: int, default_tiling, tokenizer_path: str = "",
                 pixel_dtype: torch.dtype | None = None, normalize_on_device: bool = False):
        self.tokenizer = tokenizer
        self.template = template
        self.num_image_token = num_image_token
        self.default_tiling = default_tiling
        self.tokenizer_path = tokenizer_path or getattr(tokenizer, "path", "")
        self.pixel_dtype = pixel_dtype
        self.normalize_on_device = normalize_on_device   # uint8 tiles; the engine normalises them on its device

    @classmethod
    def from_engine(cls, engine: Engine, pixel_dtype: torch.dtype | None = None) -> "Preparer":
        return cls(engine.tokenizer, engine.template, engine.num_image_token, engine.default_tiling,
                   tokenizer_path=engine.path, pixel_dtype=pixel_dtype,
                   normalize_on_device=getattr(engine, "normalize_on_device", False))

    def __call__(self, images: Sequence, question: str, tiling=None) -> Prepared:
        prepared = self.prepare(images, question, tiling)
        if (self.pixel_dtype is not None and prepared.pixel_values is not None
                and prepared.pixel_values.is_floating_point()):
            # Cast in the worker: half the bytes to pin and copy, and fp32 -> bf16 rounds the same on CPU and GPU.
            prepared.pixel_values = prepared.pixel_values.to(self.pixel_dtype)
        return prepared

    def __getstate__(self):
        state = dict(self.__dict__)
        try:
            pickle.dumps(self.tokenizer)
        except Exception:  # noqa: BLE001 - any pickling failure means "rebuild it in the worker"
            if not self.tokenizer_path:
                raise
            state["tokenizer"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.tokenizer_path)   # the checkpoint's own kind (InternLM2, Qwen2, Phi-3)


class SamplePreparationError(RuntimeError):
    """Decoding, tiling or tokenizing one sample failed; the message names the sample index and its images."""


class PreparedDataset(Dataset):
    """``dataset[i] -> (i, Prepared)``: one sample decoded, tiled and tokenized (in a worker when num_workers > 0)."""

    def __init__(self, samples: Sequence[Sample], preparer: Preparer, tiling=None):
        self.samples = samples
        self.preparer = preparer
        self.tiling = tiling

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, Prepared]:
        images, question = self.samples[index]
        try:
            return index, self.preparer(images, question, self.tiling)
        except Exception as exc:  # noqa: BLE001 - re-raised with the sample named (workers lose the context)
            names = [str(i) if not isinstance(i, Image.Image) else f"<PIL {i.mode} {i.size}>" for i in images]
            raise SamplePreparationError(f"sample {index} ({', '.join(names)}): {type(exc).__name__}: {exc}") from exc


class PreparedBatch(list):
    """A list of ``(index, Prepared)``; ``pin_memory()`` lets the DataLoader's pin thread pin the pixel tensors."""

    def pin_memory(self, device=None) -> "PreparedBatch":
        for _, prepared in self:
            if prepared.pixel_values is not None and not prepared.pixel_values.is_pinned():
                prepared.pixel_values = prepared.pixel_values.pin_memory()
        return self


def collate(items: list[tuple[int, Prepared]]) -> PreparedBatch:
    """Keep samples as they are (no stacking: prompts and tile counts differ); the engine pads per batch."""
    return PreparedBatch(items)


# ---------------------------------------------------------------------------------------------------------------------
# Cheap length estimates and bucketing
# ---------------------------------------------------------------------------------------------------------------------
def image_size(image) -> tuple[int, int]:
    """(width, height) without decoding pixels: PIL reads only the header of a file."""
    if isinstance(image, Image.Image):
        return image.size
    with Image.open(image) as opened:
        return opened.size


def estimate_tiles(size: tuple[int, int], tiling) -> int:
    """Number of 448x448 tiles ``tile_image`` will produce for an image of ``size``, without resizing anything.

    MSAC: scale 1 has ``a1 (+1 thumbnail if a1 != 1)`` tiles, scale 2 ``a2 (+1 if a2 != 1)``; the official order
    ``s1[:-1] + s2[:-1] + s1[-1:]`` keeps ``n1 + n2 - 1`` of them. Dynamic: ``a (+1 if a != 1)``.
    """
    width, height = size
    grid1 = closest_grid(width, height, candidate_grids(tiling.min_num, tiling.max_num))
    n1 = grid1[0] * grid1[1]
    n1 += n1 != 1
    if tiling.kind == "dynamic":
        return n1
    if tiling.kind != "msac":
        raise ValueError(f"unknown tiling kind {tiling.kind!r}; use 'msac' or 'dynamic'")
    grid2 = closest_grid(width, height, second_scale_grids(tiling.min_num2, tiling.max_num2, grid1))
    n2 = grid2[0] * grid2[1]
    n2 += n2 != 1
    return n1 + n2 - 1


def estimate_tokens(preparer: Preparer, images: Sequence, question: str, tiling) -> int:
    """Prompt length of a sample: the text tokens (exact) + 256 per estimated tile."""
    tiles = [estimate_tiles(image_size(image), tiling) for image in images]
    text = preparer.tokenizer.encode(build_query(question, [0] * len(images), preparer.template, 0))
    return len(text) + preparer.num_image_token * sum(tiles)


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Sample indices sorted by length, longest first (stable), cut into batches of ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)]


def auto_batch_size(engine: Engine, tokens_per_sample: int, max_new_tokens: int = 512,
                    free_bytes: int | None = None, max_batch: int = AUTO_MAX_BATCH_SIZE) -> int:
    """A batch size that fits free GPU memory for prompts of ``tokens_per_sample`` tokens.

    On CPU (and no ``free_bytes`` given) returns ``CPU_AUTO_BATCH_SIZE``. On CUDA, with b = bytes per element of the
    model dtype, text model width D, MLP width F, layers N, KV heads Hkv of size d, P = ``tokens_per_sample`` and
    T = ``max_new_tokens``::

        kv_per_token  = 2 * N * Hkv * d * b        KV cache (keys + values, all layers)
        act_per_token = (6*D + 3*F) * b            prefill working set of one layer (residual, norm, q/k/v/o,
                                                   gate/up/act), freed layer by layer
        emb_per_token = 3 * D * b                  image features, inputs_embeds, the left-padded copy
        pix_per_token = 2 * 3 * S**2 * b / 256     the tiles on the device (per-sample copies + their concatenation;
                                                   S = 448, 256 tokens per tile)
        per_sample    = (P + T) * kv_per_token + P * (act + emb + pix per token) + 3 * P**2
                                                   (the last term: SDPA's boolean [B, 1, P, P] padding mask and the
                                                   additive bias the memory-efficient kernel turns it into)
        reserve       = vision_batch_size * 1025 * (6*Dv + 2*Iv) * b + 1 GiB
                                                   (one ViT chunk's working set, plus headroom for the allocator)
        batch         = clamp(floor((0.9 * free - reserve) / per_sample), 1, max_batch)

    ``free`` is ``torch.cuda.mem_get_info`` plus what PyTorch's caching allocator holds but does not use. The
    weights are already loaded, so they are not counted again. Logits are only computed for the last position.
    """
    if free_bytes is None:
        device = engine.device
        if device.type != "cuda":
            return CPU_AUTO_BATCH_SIZE
        free, _ = torch.cuda.mem_get_info(device)
        free_bytes = free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    cfg = engine.model.config
    text, vision = cfg.text_config, cfg.vision_config
    b = torch.empty((), dtype=engine.dtype).element_size()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_per_token = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * b
    act_per_token = (6 * text.hidden_size + 3 * text.intermediate_size) * b
    emb_per_token = 3 * text.hidden_size * b
    pix_per_token = 2 * 3 * engine.config.image_size ** 2 * b / engine.num_image_token
    p = max(1, int(tokens_per_sample))
    per_sample = (p + max_new_tokens) * kv_per_token + p * (act_per_token + emb_per_token + pix_per_token) + 3 * p * p
    vit_tokens = (_first(vision.image_size) // _first(vision.patch_size)) ** 2 + 1
    reserve = engine.vision_batch_size * vit_tokens * (6 * vision.hidden_size + 2 * vision.intermediate_size) * b
    reserve += AUTO_HEADROOM_BYTES
    usable = 0.9 * free_bytes - reserve
    return int(max(1, min(max_batch, usable // per_sample)))


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


# ---------------------------------------------------------------------------------------------------------------------
# Fast path
# ---------------------------------------------------------------------------------------------------------------------
RunBatch = Callable[..., list]  # run_batch(engine, prepared_list, **options) -> answers


def _warn_if_shared_memory_small(num_workers: int, in_flight: int, max_tiles: int, image_size: int,
                                 itemsize: int) -> None:
    """Workers hand tensors over through /dev/shm (64 MB by default in Docker): warn before it runs out."""
    if num_workers <= 0:
        return
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        return
    need = in_flight * max_tiles * 3 * image_size * image_size * itemsize
    if need > free:
        logger.warning("DataLoader workers may need ~%.1f GiB of /dev/shm for %d prefetched samples but %.1f GiB is "
                       "free; lower num_workers/prefetch or enlarge /dev/shm (docker --shm-size)", need / 2 ** 30,
                       in_flight, free / 2 ** 30)


def _to_device(batch: PreparedBatch, device: torch.device) -> PreparedBatch:
    """Start the (pinned, asynchronous) host-to-device copies of a batch's tiles before the engine concatenates them.

    ``Engine.generate_prepared`` concatenates the samples' tiles with ``torch.cat``; on CPU tensors that makes a new,
    pageable copy (so pinning would be lost); on device tensors it is a device-side copy.
    """
    for _, prepared in batch:
        if prepared.pixel_values is not None:
            prepared.pixel_values = prepared.pixel_values.to(device, non_blocking=True)
    return batch


def auto_prefetch_factor(batch_size: int, num_workers: int) -> int:
    """Samples each worker keeps in flight so that about two batches are prepared ahead of the GPU."""
    return max(2, math.ceil(2 * batch_size / max(1, num_workers)))


def make_loader(samples: Sequence[Sample], preparer: Preparer, tiling, order: Sequence[int], num_workers: int = 0,
                pin_memory: bool = False, prefetch_factor: int = 2) -> DataLoader:
    """A DataLoader yielding one-sample :class:`PreparedBatch` es in ``order``.

    Samples, not batches, are the unit of work, so all workers cooperate on the next batch (a batch-per-worker
    loader would make the GPU wait for one worker to tile a whole batch) and in-order delivery keeps ``order``.
    """
    kwargs = dict(prefetch_factor=prefetch_factor) if num_workers > 0 else {}
    return DataLoader(PreparedDataset(samples, preparer, tiling), batch_size=1, sampler=list(order),
                      num_workers=num_workers, collate_fn=collate, pin_memory=pin_memory, **kwargs)


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_with_backoff(run: RunBatch, engine: Engine, prepared: list[Prepared], **options) -> list[str]:
    """``run(engine, prepared, **options)``; on a device out-of-memory error, split the batch in halves and retry."""
    try:
        return run(engine, prepared, **options)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if len(prepared) == 1 or not _is_out_of_memory(exc):
            raise
    if engine.device.type == "cuda":
        torch.cuda.empty_cache()
    half = len(prepared) // 2
    logger.warning("out of memory with a batch of %d; retrying as %d + %d", len(prepared), half, len(prepared) - half)
    return (run_with_backoff(run, engine, prepared[:half], **options)
            + run_with_backoff(run, engine, prepared[half:], **options))


def generate_stream(engine: Engine, samples: Sequence[Sample], tiling=None, batch_size: int | str = 8,
                    num_workers: int = 0, max_new_tokens: int = 512, scm: bool = False, scm_ratio: float = 0.5,
                    scm_fix_off_by_one: bool = False, prefetch_factor: int | None = None,
                    pin_memory: bool | None = None, cast_in_workers: bool = True, run_batch: RunBatch | None = None,
                    **generate_kwargs) -> Iterator[tuple[int, str]]:
    """Answer ``samples`` = [(images, question), ...], yielding ``(sample_index, answer)`` as batches finish.

    Every index is yielded exactly once (order: longest estimated prompt first). ``batch_size`` is an int or
    ``'auto'`` (:func:`auto_batch_size` for the longest sample); a batch that runs out of device memory is split
    and retried. ``num_workers=0`` prepares in-process; with workers, ``prefetch_factor`` (default: about two
    batches in flight, :func:`auto_prefetch_factor`) is per worker. ``run_batch(engine, prepared, **options)``
    replaces ``Engine.generate_prepared`` (the benchmark's timers). On CUDA the workers cast tiles to the model
    dtype, the loader pins them, and each batch's tiles are copied to the device asynchronously before it runs.
    """
    if not samples:
        return
    tiling = tiling or engine.default_tiling
    on_cuda = engine.device.type == "cuda"
    preparer = Preparer.from_engine(engine, pixel_dtype=engine.dtype if cast_in_workers else None)
    lengths = []
    for index, (images, question) in enumerate(samples):
        try:
            lengths.append(estimate_tokens(preparer, images, question, tiling))
        except (OSError, ValueError) as exc:   # unreadable image header: name the sample now, not in a worker
            raise SamplePreparationError(f"sample {index} ({', '.join(map(str, images))}): "
                                         f"{type(exc).__name__}: {exc}") from exc
    if batch_size == "auto":
        batch_size = auto_batch_size(engine, max(lengths), max_new_tokens)
        logger.info("batch_size=auto: %d (longest prompt ~%d tokens)", batch_size, max(lengths))
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or 'auto', got {batch_size!r}")
    batches = plan_batches(lengths, batch_size)
    if prefetch_factor is None:
        prefetch_factor = auto_prefetch_factor(batch_size, num_workers)
    pixel_dtype = torch.uint8 if preparer.normalize_on_device else (preparer.pixel_dtype or torch.float32)
    itemsize = torch.empty((), dtype=pixel_dtype).element_size()
    _warn_if_shared_memory_small(num_workers, num_workers * prefetch_factor,
                                 max(lengths) // engine.num_image_token + 1, engine.config.image_size, itemsize)
    loader = make_loader(samples, preparer, tiling, [i for plan in batches for i in plan], num_workers=num_workers,
                         pin_memory=on_cuda if pin_memory is None else pin_memory, prefetch_factor=prefetch_factor)
    run = run_batch or type(engine).generate_prepared
    options = dict(max_new_tokens=max_new_tokens, scm=scm, scm_ratio=scm_ratio, scm_fix_off_by_one=scm_fix_off_by_one,
                   **generate_kwargs)
    items = iter(loader)
    for plan in batches:
        batch = PreparedBatch()
        for _ in plan:
            batch.extend(next(items))
        if on_cuda:
            batch = _to_device(batch, engine.device)
        answers = run_with_backoff(run, engine, [prepared for _, prepared in batch], **options)
        for (index, _), answer in zip(batch, answers, strict=True):
            yield index, answer


def generate_fast(engine: Engine, samples: Sequence[Sample], **kwargs) -> list[str]:
    """:func:`generate_stream` collected into input order."""
    answers: list[str | None] = [None] * len(samples)
    for index, answer in generate_stream(engine, samples, **kwargs):
        answers[index] = answer
    return answers  # type: ignore[return-value]


__all__ = [
    "CPU_AUTO_BATCH_SIZE", "Preparer", "PreparedBatch", "PreparedDataset", "SamplePreparationError", "Tiling",
    "auto_batch_size", "auto_prefetch_factor", "collate",
    "estimate_tiles", "estimate_tokens", "generate_fast", "generate_stream", "image_size", "make_loader",
    "plan_batches", "run_with_backoff",
]
