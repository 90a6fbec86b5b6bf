"""Work items and how they are planned: :class:`Job` (one sample through the pipeline), :class:`Prepared` (one
sample ready for the model), cheap prompt-length estimates from image headers, length-bucketed batch plans that keep
questions about one image together, the ``batch_size='auto'`` rule, and the out-of-memory backoff helpers.

Pure bookkeeping on top of torch and Pillow: no model, no threads (``pipeline.py`` runs the plan, ``engine.py``
answers it).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from PIL import Image

from minimonkey_eval.models.chat_template import build_query
from minimonkey_eval.models.settings import DYNAMIC, MSAC, Tiling
from minimonkey_eval.models.tiling import candidate_grids, closest_grid, second_scale_grids

# batch_size='auto' without CUDA: 1. Profiled on the tiny checkpoint (2 CPU cores): a left-padded batch of two
# 10k-token prompts took 23.6 s to prefill against 2 x 4.9 s one at a time (the padding mask sends SDPA to its
# materialised-mask path), and CPU matmuls already use every core at batch 1.
CPU_AUTO_BATCH_SIZE = 1
# ... except for the questions about one image with a shared prompt prefix (models.reuse): the prefix is prefilled
# once ([1, P], no padding) and only the short suffixes are batched, so on CPU 'auto' keeps such a group whole in
# one batch, up to this many questions (pipeline.Pipeline: reuse on, SCM off, greedy).
CPU_AUTO_GROUP_SIZE = 16
AUTO_MAX_BATCH_SIZE = 64
AUTO_HEADROOM_BYTES = 1 << 30
FILL_LOOKAHEAD = 8  # plan_batches: how many later groups may fill a batch the next group does not fit in


# ---------------------------------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Job:
    """One sample on its way through the pipeline; ``error`` + ``failed_at`` ('describe', 'prepare', 'generate')
    when it could not be answered, ``note`` when it was answered with fewer tiles after an out-of-memory.

    ``image_key``: optional hint naming the sample's image(s) (any hashable; jobs with equal hints must have the same
    images, e.g. from a TSV's index references); without it the pipeline hashes the image bytes. ``vision_key`` /
    ``share_key`` are filled in by the pipeline (``models.reuse``). Counters, once answered: ``vit_passes`` /
    ``vit_tiles`` (images / tiles this job actually ran through the ViT: a group's first job counts them),
    ``prefill_tokens`` (LLM tokens actually prefilled for it: its suffix, plus the shared prefix for a group's first
    row) and ``prompt_tokens`` (its prompt's length)."""

    key: object = None
    images: list = dataclasses.field(default_factory=list)
    question: str = ""
    tiling: Tiling | None = None
    max_new_tokens: int = 512
    tokens: int = 0                      # estimated prompt tokens (bucketing, auto batch size)
    prepared: object = None              # engine.Prepared once staged
    answer: str | None = None
    error: BaseException | None = None
    failed_at: str = ""
    note: str = ""
    extra: dict = dataclasses.field(default_factory=dict)
    image_key: object = None
    vision_key: object = None
    share_key: object = None
    vit_passes: int = 0
    vit_tiles: int = 0
    prefill_tokens: int = 0
    prompt_tokens: int = 0

    def fail(self, stage: str, exc: BaseException) -> "Job":
        self.error, self.failed_at, self.prepared = exc, stage, None
        return self


# ---------------------------------------------------------------------------------------------------------------------
# Cheap length estimates and bucketing
# ---------------------------------------------------------------------------------------------------------------------
def image_size(image) -> tuple[int, int]:
    """(width, height) without decoding pixels: PIL reads only the header of a file."""
    if isinstance(image, Image.Image):
        return image.size
    with Image.open(image) as opened:
        return opened.size


def estimate_tiles(size: tuple[int, int], tiling, first: bool = True) -> int:
    """Number of 448x448 tiles ``tile_image`` will produce for an image of ``size``, without resizing anything.

    MSAC: scale 1 has ``a1 (+1 thumbnail if a1 != 1)`` tiles, scale 2 ``a2 (+1 if a2 != 1)``; the official order
    ``s1[:-1] + s2[:-1] + s1[-1:]`` keeps ``n1 + n2 - 1`` of them. Dynamic: ``a (+1 if a != 1)``. The Monkey repo's
    rules (``upscale_first``: the first image's first scale from the 2x image; ``independent_scale2``) included.
    """
    width, height = size
    scale = 2 if first and tiling.upscale_first and tiling.kind == MSAC else 1
    grid1 = closest_grid(width * scale, height * scale, candidate_grids(tiling.min_num, tiling.max_num))
    n1 = grid1[0] * grid1[1]
    n1 += n1 != 1
    if tiling.kind == DYNAMIC:
        return n1
    if tiling.kind != MSAC:
        raise ValueError(f"unknown tiling kind {tiling.kind!r}; use 'msac' or 'dynamic'")
    grids2 = (candidate_grids(tiling.min_num2, tiling.max_num2) if tiling.independent_scale2
              else second_scale_grids(tiling.min_num2, tiling.max_num2, grid1))
    grid2 = closest_grid(width, height, grids2)
    n2 = grid2[0] * grid2[1]
    n2 += n2 != 1
    return n1 + n2 - 1


def estimate_tokens(engine, images: Sequence, question: str, tiling) -> int:
    """Prompt length of a sample: the text tokens (exact) + ``num_image_token`` per estimated tile."""
    tiles = [estimate_tiles(image_size(image), tiling, first=k == 0) for k, image in enumerate(images)]
    text = engine.tokenizer.encode(build_query(question, [0] * len(images), engine.template, 0))
    return len(text) + engine.num_image_token * sum(tiles)


def plan_batches(lengths: Sequence[int], batch_size: int | Callable[[int], int],
                 bucket: bool = True, groups: Sequence | None = None,
                 group_size: int | None = None) -> list[list[int]]:
    """Positions sorted by length, longest first (stable), cut into batches; ``bucket=False`` keeps input order.

    ``batch_size`` is an int, or a function of the batch's longest length (``'auto'``).

    ``groups`` (a hashable per position, ``None`` for none): positions with the same key stay together, in one batch
    when they fit one (a group is sorted by its longest member, its members longest first); a group larger than the
    batch size is cut into consecutive parts of balanced sizes (7 at batch size 3: 3 + 2 + 2, so that every part
    still shares). A batch the next group does not fit in is topped up with the first of the next
    ``FILL_LOOKAHEAD`` groups that fit, else closed. Without groups: the plain cut.

    ``group_size``: a group of 2+ may fill a batch of up to ``max(batch size, group_size)`` (such a batch is not
    topped up beyond the batch size)."""
    size = batch_size if callable(batch_size) else (lambda _longest: batch_size)
    units: list[list[int]] = []
    if groups is None:
        units = [[i] for i in range(len(lengths))]
    else:
        by_key: dict = {}
        for i, key in enumerate(groups):
            if key is None:
                units.append([i])
            elif key in by_key:
                by_key[key].append(i)
            else:
                by_key[key] = [i]
                units.append(by_key[key])
    if bucket:
        units = [sorted(u, key=lambda i: -lengths[i]) for u in units]
        units.sort(key=lambda u: -lengths[u[0]])
    batches: list[list[int]] = []
    while units:
        ahead = [i for u in units[:AUTO_MAX_BATCH_SIZE] for i in u][:AUTO_MAX_BATCH_SIZE]
        n = int(size(max(lengths[i] for i in ahead)))
        if n < 1:
            raise ValueError(f"batch_size must be >= 1, got {n}")
        cap = max(n, group_size) if group_size and len(units[0]) > 1 else n
        if len(units[0]) > cap:                   # a group larger than a batch: balanced consecutive parts
            parts = -(-len(units[0]) // cap)
            take = -(-len(units[0]) // parts)
            batch, units[0] = units[0][:take], units[0][take:]
        else:
            batch = units.pop(0)
        k = 0                                     # groups passed over (too large for the room left)
        while k < min(len(units), FILL_LOOKAHEAD) and len(batch) < n:
            if len(batch) + len(units[k]) <= n:
                batch = batch + units.pop(k)
            else:
                k += 1
        batches.append(batch)
    return batches


def auto_batch_size(engine, tokens_per_sample: int, max_new_tokens: int = 512,
                    free_bytes: int | None = None, max_batch: int = AUTO_MAX_BATCH_SIZE) -> int:
    """A batch size that fits free GPU memory for prompts of ``tokens_per_sample`` tokens.

    On CPU (and no ``free_bytes`` given) returns ``CPU_AUTO_BATCH_SIZE``. On CUDA, with b = bytes per element of the
    model dtype, text model width D, MLP width F, layers N, KV heads Hkv of size d, P = ``tokens_per_sample`` and
    T = ``max_new_tokens``::

        kv_per_token  = 2 * N * Hkv * d * b        KV cache (keys + values, all layers)
        act_per_token = (6*D + 3*F) * b            prefill working set of one layer, freed layer by layer
        emb_per_token = 3 * D * b                  image features, inputs_embeds, the left-padded copy
        pix_per_token = 2 * 3 * S**2 * b / 256     the tiles on the device (S = 448, 256 tokens per tile)
        per_sample    = (P + T) * kv_per_token + P * (act + emb + pix per token) + 3 * P**2
                                                   (the last term: SDPA's [B, 1, P, P] padding mask + bias)
        reserve       = vision_batch_size * 1025 * (6*Dv + 2*Iv) * b + 1 GiB
        batch         = clamp(floor((0.9 * free - reserve) / per_sample), 1, max_batch)

    ``free`` is ``torch.cuda.mem_get_info`` plus what PyTorch's caching allocator holds but does not use.
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


def default_threads() -> int:
    """Staging threads: one per spare core of this rank's share of the machine (cores / torchrun's
    LOCAL_WORLD_SIZE, minus one for the device-feeding thread), at least 1, at most 8."""
    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(8, (os.cpu_count() or 2) // local_ranks - 1))


# ---------------------------------------------------------------------------------------------------------------------
# Out-of-memory backoff helpers
# ---------------------------------------------------------------------------------------------------------------------
def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def empty_device_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def fewer_tiles(setting: Tiling) -> Tiling | None:
    """The tiling with every maximum halved (minimum lowered to fit), or None when it is already 1 tile."""
    if setting.kind == MSAC:
        if setting.max_num <= 1 and setting.max_num2 <= 1:
            return None
        max1, max2 = max(1, setting.max_num // 2), max(1, setting.max_num2 // 2)
        return dataclasses.replace(setting, min_num=min(setting.min_num, max1), max_num=max1,
                                   min_num2=min(setting.min_num2, max2), max_num2=max2)
    if setting.max_num <= 1:
        return None
    max1 = max(1, setting.max_num // 2)
    return dataclasses.replace(setting, min_num=min(setting.min_num, max1), max_num=max1)


@dataclass
class Prepared:
    """One sample, ready for the model: token ids, its tiles, and where SCM's first-scale block is.

    ``vision_key`` (hashable, ``reuse.vision_key``): samples of one batch with the same key share one ViT pass (and,
    with SCM off, a prefilled prompt prefix); ``None``: only samples holding the very same ``pixel_values`` tensor
    share."""

    input_ids: list[int]
    pixel_values: torch.Tensor | None
    tiles_per_image: list[int]
    first_scale_tokens: int = 0
    extra: dict = field(default_factory=dict)
    vision_key: object = None

    @property
    def num_tiles(self) -> int:
        return sum(self.tiles_per_image)
