"""Compute each image once: sharing keys, the counters, and generation from a shared prompt prefix.

Benchmarks ask several questions about one image (DocVQA ~4.2 per image, POPE ~10.3). Without reuse every question
is a separate sample: its image decoded, tiled, ViT-encoded and its whole prompt prefilled again. With reuse
(``reuse=True``, the default of ``Pipeline`` / ``generate_stream`` / ``Engine.generate``):

* **keys** (:func:`image_content_key`, :func:`vision_key`, :func:`share_key`): a sample's images are known by the
  caller's ``Job.image_key`` hint or by the content hash of their bytes (a file: SHA-1 of its bytes, cached per
  path/inode/size/mtime; a PIL image: SHA-1 of mode + size + pixels). The vision key adds the tiling (tiles depend on
  it), the sharing key also the text up to the last ``<image>`` placeholder (where the image tokens sit in the
  prompt). The planner (``pipeline.plan_batches``) keeps the jobs of one sharing key in one batch.
* **vision reuse** (``Engine.generate_prepared``): one tiling (staging) and one ViT + projector pass per vision key and
  batch; features of a key whose questions continue in a later batch of the same window are kept on the device
  until then (:class:`FeatureCache`, bounded). SCM, applied per question after embedding, keeps working.
* **prefix reuse** (SCM off, greedy): questions about one image share the prompt up to the end of its image tokens
  (``system + user header + <img> ... </img>``, for multi-image prompts up to the last ``</img>``). The common
  prefix of such a group is prefilled once, its KV cache copied to every row of the group, and each row prefills only
  its own suffix, with position ids continuing from the prefix (:func:`generate_shared`). A batch in which nothing
  is shared takes the unchanged path (one left-padded ``generate``).

Counters (:class:`ReuseStats`, and per job ``Job.vit_passes`` / ``vit_tiles`` / ``prefill_tokens`` /
``prompt_tokens``, all of them in ``Job.extra['reuse']`` with ``prefix_tokens``, :func:`prefix_length`): images and
tiles actually run through the ViT, tokens actually prefilled vs the prompt tokens asked for.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Sequence

import torch
from PIL import Image

from minimonkey_eval.models.chat_template import IMAGE_PLACEHOLDER

FEATURE_CACHE_BYTES = 512 << 20  # image features kept on the device across the batches of one window, at most
_HASH_CACHE_SIZE = 4096


# ---------------------------------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------------------------------
_file_hashes: "OrderedDict[tuple, str]" = OrderedDict()
_pil_hashes: dict[int, tuple] = {}
_lock = threading.Lock()


def _remember(table: OrderedDict, key, value) -> None:
    with _lock:
        table[key] = value
        table.move_to_end(key)
        while len(table) > _HASH_CACHE_SIZE:
            table.popitem(last=False)


def _file_key(path) -> str:
    stat = os.stat(path)
    ident = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _lock:
        known = _file_hashes.get(ident)
    if known is not None:
        return known
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    key = "sha1:" + digest.hexdigest()
    _remember(_file_hashes, ident, key)
    return key


def _pil_key(image: Image.Image) -> str:
    with _lock:
        known = _pil_hashes.get(id(image))
    if known is not None and known[0]() is image:
        return known[1]
    digest = hashlib.sha1(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    palette = image.getpalette() if image.mode in ("P", "PA") else None
    if palette is not None:   # a palette image's pixels are indices: the colours are in the palette
        digest.update(bytes(palette))
    digest.update(image.tobytes())
    key = "pil-sha1:" + digest.hexdigest()
    ident = id(image)
    try:
        ref = weakref.ref(image, lambda _ref: _forget(ident, _ref))
    except TypeError:
        return key
    with _lock:
        _pil_hashes[ident] = (ref, key)
    return key


def _forget(ident: int, ref) -> None:
    with _lock:
        if ident in _pil_hashes and _pil_hashes[ident][0] is ref:
            del _pil_hashes[ident]


def image_content_key(image) -> str:
    """The content hash of one image: a file's bytes (two paths with the same bytes share it) or a PIL image's mode,
    size, pixels (and palette). File hashes are cached per real path, inode, size, mtime and ctime; a PIL image's
    per object while it lives (an image changed in place after its first question is not seen)."""
    if isinstance(image, Image.Image):
        return _pil_key(image)
    if isinstance(image, (str, os.PathLike)):
        return _file_key(image)
    raise TypeError(f"images must be PIL images or paths, got {type(image).__name__}")


def images_key(images: Sequence, hint=None):
    """Key of a sample's image list: the caller's ``hint`` (``Job.image_key``) when given, else the content hashes."""
    if hint is not None:
        return ("hint", hint)
    return tuple(image_content_key(image) for image in images)


def vision_key(images: Sequence, tiling, hint=None):
    """What determines a sample's tiles and image features: its images (in order) and the tiling; None: no images."""
    if not images and hint is None:
        return None
    return ("vision", images_key(images, hint), tiling)


def image_position(question: str) -> str:
    """The question text up to and including its last ``<image>`` placeholder (``'<image>'`` when it has none:
    ``build_query`` prepends ``'<image>\\n'``): with the vision key, what makes two prompts' image parts identical."""
    at = question.rfind(IMAGE_PLACEHOLDER)
    return IMAGE_PLACEHOLDER if at < 0 else question[:at + len(IMAGE_PLACEHOLDER)]


def share_key(images: Sequence, question: str, tiling, hint=None):
    """The full sharing key (image content key(s), tiling, image position in the prompt); None without images."""
    vkey = vision_key(images, tiling, hint)
    return None if vkey is None else (vkey, image_position(question))


# ---------------------------------------------------------------------------------------------------------------------
# Counters
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class ReuseStats:
    """Work done vs work asked for, summed over answered jobs (``Pipeline.stats``).

    ``images`` / ``tiles``: images and tiles of the answered prompts (what one ViT pass per sample would encode);
    ``vit_passes`` / ``vit_tiles``: images and tiles actually run through the ViT + projector; ``prompt_tokens``:
    LLM prompt tokens asked for (after SCM); ``prefill_tokens``: tokens actually run through the LLM prefill
    (padding not counted); ``shared_rows``: answers decoded from a shared prefix."""

    jobs: int = 0
    images: int = 0
    tiles: int = 0
    vit_passes: int = 0
    vit_tiles: int = 0
    prompt_tokens: int = 0
    prefill_tokens: int = 0
    shared_rows: int = 0

    def add(self, counts: dict) -> None:
        self.jobs += 1
        for f in fields(self):
            if f.name != "jobs":
                setattr(self, f.name, getattr(self, f.name) + int(counts.get(f.name, 0)))

    @property
    def saved_vit_tiles(self) -> int:
        return self.tiles - self.vit_tiles

    @property
    def saved_prefill_tokens(self) -> int:
        return self.prompt_tokens - self.prefill_tokens

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(saved_vit_tiles=self.saved_vit_tiles, saved_prefill_tokens=self.saved_prefill_tokens)
        return out


def counts(prepared, *, vit_passes: int, vit_tiles: int, prompt_tokens: int, prefill_tokens: int,
           shared: bool = False) -> dict:
    """One answered sample's counters (``prepared.extra['reuse']``)."""
    return {"images": len(prepared.tiles_per_image), "tiles": prepared.num_tiles, "vit_passes": vit_passes,
            "vit_tiles": vit_tiles, "prompt_tokens": prompt_tokens, "prefill_tokens": prefill_tokens,
            "shared_rows": int(shared)}


class FeatureCache:
    """Image features kept on the device between the batches of one window, per vision key, bounded in bytes.

    The pipeline says which keys are still wanted after a batch (``retain``); the engine offers what it computed
    (``offer``: kept only if wanted and it fits)."""

    def __init__(self, max_bytes: int = FEATURE_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.entries: dict = {}

    def get(self, key):
        return self.entries.get(key)

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.entries.values())

    def offer(self, key, features: torch.Tensor, wanted) -> bool:
        if key is None or key not in wanted or key in self.entries:
            return False
        if self.bytes + features.numel() * features.element_size() > self.max_bytes:
            return False
        self.entries[key] = features.clone()   # its own memory: a slice would keep the whole batch's features alive
        return True

    def retain(self, wanted) -> None:
        for key in [k for k in self.entries if k not in wanted]:
            del self.entries[key]

    def __len__(self) -> int:
        return len(self.entries)


# ---------------------------------------------------------------------------------------------------------------------
# Prefix groups
# ---------------------------------------------------------------------------------------------------------------------
def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of token id lists."""
    first = rows[0]
    n = min(len(r) for r in rows)
    for other in rows[1:]:
        k = 0
        while k < n and other[k] == first[k]:
            k += 1
        n = k
    return n


def prefix_groups(keys: Sequence, input_ids: Sequence[Sequence[int]], img_end_id: int) -> list[list[int]]:
    """Rows that can share a prefilled prefix: same vision key (same image features) and identical token ids up to
    the last ``</img>``. Returns the groups in row order, singletons included (rows without images are singletons)."""
    groups: dict = {}
    order: list = []
    for row, (key, ids) in enumerate(zip(keys, input_ids)):
        end = _last_index(ids, img_end_id)
        ident = (row,) if key is None or end < 0 else (key, tuple(ids[:end + 1]))
        if ident not in groups:
            groups[ident] = []
            order.append(ident)
        groups[ident].append(row)
    return [groups[i] for i in order]


def _last_index(ids: Sequence[int], token: int) -> int:
    for k in range(len(ids) - 1, -1, -1):
        if ids[k] == token:
            return k
    return -1


def prefix_length(ids: Sequence[int], img_end_id: int) -> int:
    """Tokens up to and including the last ``</img>`` (what questions about one image can share); 0 without one."""
    return _last_index(ids, img_end_id) + 1


@dataclass
class SharedPlan:
    """How a batch is prefilled with shared prefixes: ``units`` (one per group, its rows), each unit's prefix length;
    every row's suffix starts at its unit's prefix length."""

    units: list[list[int]]
    prefix_lengths: list[int]
    lengths: list[int]

    @property
    def row_unit(self) -> list[int]:
        out = [0] * len(self.lengths)
        for u, rows in enumerate(self.units):
            for r in rows:
                out[r] = u
        return out

    def prefill_tokens(self) -> list[int]:
        """Per row: its own suffix, plus the unit's prefix for the unit's first row."""
        out = [0] * len(self.lengths)
        for rows, p in zip(self.units, self.prefix_lengths):
            for k, r in enumerate(rows):
                out[r] = self.lengths[r] - p + (p if k == 0 else 0)
        return out


def plan_shared(groups: list[list[int]], input_ids: Sequence[Sequence[int]]) -> SharedPlan | None:
    """A :class:`SharedPlan` when some group has 2+ rows, else None (the unchanged path). A group's prefix is its
    rows' longest common prefix, leaving every row at least one token of its own; a single row's prefix is all its
    prompt but the last token (so that the whole batch decodes together)."""
    if all(len(g) < 2 for g in groups):
        return None
    lengths = [len(ids) for ids in input_ids]
    if min(lengths) < 2:
        return None
    prefix_lengths = []
    for rows in groups:
        if len(rows) == 1:
            prefix_lengths.append(lengths[rows[0]] - 1)
        else:
            n = common_prefix([input_ids[r] for r in rows])
            prefix_lengths.append(min(n, min(lengths[r] for r in rows) - 1))
    return SharedPlan(units=[list(g) for g in groups], prefix_lengths=prefix_lengths, lengths=lengths)


# ---------------------------------------------------------------------------------------------------------------------
# Generation from shared prefixes (greedy, explicit positions, the model's own KV cache)
# ---------------------------------------------------------------------------------------------------------------------
def _cache_kwarg(text_model) -> str:
    params = inspect.signature(text_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _left_pad(parts: Sequence[torch.Tensor], length: int):
    """[n, D] pieces right-aligned in [B, length, D] (zeros before) + their 0/1 mask."""
    dim = parts[0].shape[-1]
    out = parts[0].new_zeros(len(parts), length, dim)
    mask = torch.zeros(len(parts), length, dtype=torch.long)
    for row, part in enumerate(parts):
        if part.shape[0]:
            out[row, length - part.shape[0]:] = part
            mask[row, length - part.shape[0]:] = 1
    return out, mask


def _positions(starts: Sequence[int], counts: Sequence[int], length: int) -> torch.Tensor:
    """Right-aligned position ids: row r's ``counts[r]`` real tokens get ``starts[r], starts[r] + 1, ...``;
    padding slots get 0 (masked; as ``generate`` gives them)."""
    pos = torch.zeros(len(starts), length, dtype=torch.long)
    for row, (start, n) in enumerate(zip(starts, counts)):
        if n:
            pos[row, length - n:] = torch.arange(start, start + n)
    return pos


@torch.no_grad()
def generate_shared(engine, sequences: Sequence[torch.Tensor], plan: SharedPlan, max_new_tokens: int,
                    streamer=None, watch=None) -> torch.Tensor:
    """Greedy answers [B, T] for ``sequences`` ([L_r, D] embeddings) prefilled per ``plan``.

    1. every unit's prefix (its first row's first ``P_u`` embeddings), left-padded into one [U, P_max] forward: the
       KV cache of the prefixes;
    2. the cache rows copied to the batch rows (``batch_select_indices``), then every row's suffix, left-padded into
       [B, S_max], at positions ``P_u, P_u + 1, ...``, attending to its prefix (padding in between is masked);
    3. greedy decoding, one token per row per step, positions continuing per row; stops at the eos (finished rows
       are filled with it, as ``generate`` pads) or after ``max_new_tokens``.

    ``watch(None, scores)`` sees every step's fp32 logits (the finite-logits watch); ``streamer.put`` gets the prompt
    (an empty tensor) and then the first new tokens, as ``generate`` calls it.
    """
    device = sequences[0].device
    text_model = engine.model.model.language_model
    lm_head = engine.model.lm_head
    embed = text_model.embed_tokens
    cache_kw = _cache_kwarg(text_model)
    eos = engine.eos_token_id
    batch = len(sequences)
    row_unit = plan.row_unit

    if streamer is not None:
        streamer.put(torch.empty(batch, 0, dtype=torch.long))

    # 1. prefixes
    prefixes = [sequences[rows[0]][:p] for rows, p in zip(plan.units, plan.prefix_lengths)]
    p_max = max(plan.prefix_lengths)
    embeds, prefix_mask = _left_pad(prefixes, p_max)
    positions = _positions([0] * len(prefixes), plan.prefix_lengths, p_max)
    out = text_model(inputs_embeds=embeds, attention_mask=prefix_mask.to(device), position_ids=positions.to(device),
                     use_cache=True)
    cache = _output_cache(out)
    del out, embeds
    index = torch.tensor(row_unit, device=device)
    if len(plan.units) != batch or row_unit != list(range(batch)):
        cache.batch_select_indices(index)

    # 2. suffixes
    starts = [plan.prefix_lengths[u] for u in row_unit]
    suffixes = [seq[start:] for seq, start in zip(sequences, starts)]
    s_counts = [s.shape[0] for s in suffixes]
    s_max = max(s_counts)
    embeds, suffix_mask = _left_pad(suffixes, s_max)
    mask = torch.cat([prefix_mask[row_unit], suffix_mask], dim=1)
    positions = _positions(starts, s_counts, s_max)
    mask = mask.to(device)
    hidden = text_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions.to(device),
                        use_cache=True, **{cache_kw: cache}).last_hidden_state
    del embeds

    # 3. greedy decoding
    next_pos = torch.tensor(plan.lengths, device=device).unsqueeze(1)
    unfinished = torch.ones(batch, dtype=torch.bool, device=device)
    tokens = []
    ones = torch.ones(batch, 1, dtype=mask.dtype, device=device)
    for step in range(max_new_tokens):
        scores = lm_head(hidden[:, -1, :]).float()
        if watch is not None:
            scores = watch(None, scores)
        token = scores.argmax(dim=-1)
        token = torch.where(unfinished, token, torch.full_like(token, eos))
        tokens.append(token)
        if streamer is not None:
            streamer.put(token.cpu())
        unfinished &= token != eos
        if step + 1 == max_new_tokens or not bool(unfinished.any()):
            break
        mask = torch.cat([mask, ones], dim=1)
        hidden = text_model(inputs_embeds=embed(token[:, None]), attention_mask=mask, position_ids=next_pos,
                            use_cache=True, **{cache_kw: cache}).last_hidden_state
        next_pos = next_pos + 1
    if streamer is not None:
        streamer.end()
    if not tokens:
        return torch.empty(batch, 0, dtype=torch.long, device=device)
    return torch.stack(tokens, dim=1)


__all__ = [
    "FEATURE_CACHE_BYTES", "FeatureCache", "ReuseStats", "SharedPlan", "common_prefix", "counts", "generate_shared",
    "image_content_key", "image_position", "images_key", "plan_shared", "prefix_groups", "prefix_length", "share_key",
    "vision_key",
]
