"""The inference engine: original checkpoint -> tiles -> ViT -> projector -> (SCM) -> LLM -> answers.

``Engine.from_pretrained(path, dtype, device, attn_implementation)`` loads an original-format checkpoint onto
transformers' native InternVL vision tower + projector and the LLM family's native text model (Llama for InternLM2,
Qwen2, Phi3; see ``checkpoint.ADAPTERS``); the chat template comes from config.json ``template``.
``engine.generate(samples, ...)`` answers a list of ``(images, question)`` samples, batched: samples with different
tile counts share one vision call and one KV-cached ``generate`` with left padding; greedy by default, outputs equal
to batch size 1 (Phi-3's length-switched RoPE included: see ``Engine._rows_to_rerun_alone``). Questions about the
same image share one ViT pass and, SCM off, one prefill of their common prompt prefix (``models.reuse``;
``reuse=False`` switches it off).

The engine imports neither vlmeval nor the CLI, so it runs on a bare GPU box with torch + transformers.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable, Sequence

import torch
from PIL import Image

from minimonkey_eval.models.chat_template import build_query, get_template
from minimonkey_eval.models.checkpoint import OriginalConfig, load_pretrained
from minimonkey_eval.models.pipeline import generate
from minimonkey_eval.models.planning import Prepared
from minimonkey_eval.models.reuse import counts, generate_shared, plan_shared, prefix_groups
from minimonkey_eval.models.scm import scm_keep_indices
from minimonkey_eval.models.settings import DYNAMIC, MSAC, ScmConfig, Tiling
from minimonkey_eval.models.tiling import Tiles, dynamic_tiling, msac_tiling, normalize_pixels
from minimonkey_eval.models.tokenizer import IMG_CONTEXT, IMG_END

logger = logging.getLogger(__name__)


# VLMEvalKit MiniMonkey wrapper's tiles when no dataset is given (4-12 / 3-7).
DEFAULT_TILING = Tiling.msac()


def tile_image(image: Image.Image | str, tiling: Tiling, normalize: bool = True, first: bool = True) -> Tiles:
    """Tile one image by a :class:`Tiling` (its ``independent_scale2`` and ``upscale_first`` are the Monkey repo's
    multi-image and MMMU rules: ``first`` says whether this is the sample's first image)."""
    if tiling.kind == MSAC:
        return msac_tiling(image, tiling.min_num, tiling.max_num, tiling.min_num2, tiling.max_num2,
                           normalize=normalize, independent_scale2=tiling.independent_scale2,
                           upscale=first and tiling.upscale_first)
    if tiling.kind == DYNAMIC:
        return dynamic_tiling(image, max_num=tiling.max_num, min_num=tiling.min_num, normalize=normalize)
    raise ValueError(f"unknown tiling kind {tiling.kind!r}; use 'msac' or 'dynamic'")


def _decode_errors(images: Sequence) -> None:
    for image in images:
        if not isinstance(image, (Image.Image, str, Path)):
            raise TypeError(f"images must be PIL images or paths, got {type(image).__name__}")


class Engine:
    """Mini-Monkey / InternVL2 inference on native transformers modules."""

    def __init__(self, model, tokenizer, config: OriginalConfig, path: str | Path = "", default_tiling=DEFAULT_TILING):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.path = str(path)
        self.default_tiling = default_tiling
        self.template = get_template(config.template, config.system_message)
        self.img_context_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
        self.img_end_id = tokenizer.convert_tokens_to_ids(IMG_END)
        # As the official chat(): the one eos is the template's separator token (<|im_end|> or <|end|>).
        self.eos_token_id = tokenizer.convert_tokens_to_ids(self.template.sep.strip())
        if self.eos_token_id is None:
            raise ValueError(f"tokenizer has no {self.template.sep.strip()!r} token "
                             f"for template {self.template.name!r}")
        self.num_image_token = config.num_image_token
        self.vision_batch_size = 64
        # Opt-in speed-up: tiles leave the CPU as uint8 (1/4 of the bytes, no float work on the CPU) and are
        # normalised on the model's device. Bit-equal on CPU (tested); on CUDA to be confirmed
        # (tests/models/test_tiling.py has the CUDA check), hence off by default.
        self.normalize_on_device = False

    # ---- loading ---------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | str | None = None, device: str | None = None,
                        attn_implementation: str = "sdpa", default_tiling=DEFAULT_TILING) -> "Engine":
        """Load an original-format checkpoint. Defaults: CUDA + bf16 when available, else CPU + fp32; SDPA."""
        from minimonkey_eval.models.options import check_device, resolve_dtype

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        check_device(device)
        if not isinstance(dtype, torch.dtype):
            dtype = getattr(torch, resolve_dtype(dtype, device))
        elif dtype not in (torch.bfloat16, torch.float16, torch.float32):
            from minimonkey_eval.models.options import OptionError

            raise OptionError(f"dtype {dtype}: choose one of bf16, fp16, fp32")
        if attn_implementation == "flash_attention_2":
            try:
                import flash_attn  # noqa: F401
            except ImportError:
                logger.warning("flash-attn is not installed; using PyTorch SDPA")
                attn_implementation = "sdpa"
        model, tokenizer, config = load_pretrained(path, dtype=dtype, device=device,
                                                   attn_implementation=attn_implementation)
        return cls(model, tokenizer, config, path=path, default_tiling=default_tiling)

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.lm_head.weight.dtype

    # ---- preparation (CPU) -----------------------------------------------------------------------------------------
    def prepare(self, images: Sequence, question: str, tiling=None) -> Prepared:
        """Tile the images and tokenize the chat prompt for one sample (the pipeline then checks its length against
        the model's positions, :meth:`check_length`)."""
        tiling = tiling or self.default_tiling
        _decode_errors(images)
        tiles = [tile_image(image, tiling, normalize=not self.normalize_on_device, first=k == 0)
                 for k, image in enumerate(images)]
        return self.prepare_tiles(tiles, question)

    def prepare_tiles(self, tiles: Sequence[Tiles], question: str) -> Prepared:
        counts = [t.pixel_values.shape[0] for t in tiles]
        query = build_query(question, counts, self.template, self.num_image_token)
        input_ids = self.tokenizer.encode(query)
        pixel_values = torch.cat([t.pixel_values for t in tiles]) if tiles else None
        first = tiles[0].first_scale_tiles * self.num_image_token if tiles else 0
        return Prepared(input_ids, pixel_values, counts, first_scale_tokens=first)

    def prepare_shared(self, prepared: Prepared, question: str) -> Prepared:
        """Another question about ``prepared``'s images: its tiles (the same tensor, not tiled again), the new prompt.
        Equal to ``prepare`` of the same images, tiling and ``question``."""
        query = build_query(question, list(prepared.tiles_per_image), self.template, self.num_image_token)
        return Prepared(self.tokenizer.encode(query), prepared.pixel_values, list(prepared.tiles_per_image),
                        first_scale_tokens=prepared.first_scale_tokens, vision_key=prepared.vision_key)

    @property
    def max_positions(self) -> int | None:
        """The LLM's ``max_position_embeddings`` (its text config), None when it has none."""
        limit = getattr(self.model.config.text_config, "max_position_embeddings", None)
        return int(limit) if isinstance(limit, int) and limit > 0 else None

    def check_length(self, input_ids: Sequence[int], max_new_tokens: int = 0) -> None:
        """A prompt (image tokens included) plus ``max_new_tokens`` over the model's positions is a
        :class:`PromptTooLongError` naming the limit: the pipeline calls this on every staged sample, so such a
        sample fails before any forward."""
        limit = self.max_positions
        if limit is not None and len(input_ids) + max(0, int(max_new_tokens)) > limit:
            images = sum(1 for t in input_ids if t == self.img_context_id)
            raise PromptTooLongError(f"prompt too long: {len(input_ids)} tokens ({images} of them image tokens) + "
                                     f"max_new_tokens {int(max_new_tokens)} exceed the model's "
                                     f"max_position_embeddings {limit}; not run")

    # ---- model parts ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def image_features(self, pixel_values: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """ViT -> drop CLS -> pixel shuffle (0.5, v2) -> MLP projector: [N, 3, 448, 448] -> [N, 256, D].

        ``pixel_values`` may be a list of per-sample tile tensors: they are cut into ``vision_batch_size`` chunks
        across samples without first concatenating them on the host."""
        parts = [pixel_values] if isinstance(pixel_values, torch.Tensor) else list(pixel_values)
        inner = self.model.model
        outputs = []
        for chunk in _chunks(parts, self.vision_batch_size):
            if chunk.dtype == torch.uint8:   # normalize_on_device: ToTensor + Normalize here, in float32
                chunk = normalize_pixels(chunk.to(self.device, non_blocking=True)).to(self.dtype)
            else:
                chunk = chunk.to(self.device, self.dtype, non_blocking=True)
            if self.config.select_layer == -1:
                hidden = inner.vision_tower(pixel_values=chunk).last_hidden_state
            else:
                hidden = inner.vision_tower(pixel_values=chunk, output_hidden_states=True).hidden_states[
                    self.config.select_layer]
            hidden = hidden[:, 1:]
            side = int(hidden.shape[1] ** 0.5)
            hidden = hidden.reshape(hidden.shape[0], side, side, -1)
            hidden = inner.pixel_shuffle(hidden, scale_factor=self.config.downsample_ratio)
            hidden = hidden.reshape(hidden.shape[0], -1, hidden.shape[-1])
            outputs.append(inner.multi_modal_projector(hidden))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def embed(self, prepared: Prepared, features: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with the image features written over the ``<IMG_CONTEXT>`` positions, [L, D]."""
        ids = torch.tensor(prepared.input_ids, device=self.device)
        embeds = self.model.model.language_model.embed_tokens(ids)
        # slot positions from the host-side ids: no device sync (a boolean-mask index would wait for the GPU)
        slots = [i for i, t in enumerate(prepared.input_ids) if t == self.img_context_id]
        n_slots = len(slots)
        if features is None:
            if n_slots:
                raise ValueError(f"prompt has {n_slots} {IMG_CONTEXT} tokens but no images")
            return embeds
        flat = features.reshape(-1, features.shape[-1]).to(embeds.dtype)
        if n_slots != flat.shape[0]:
            raise ValueError(f"prompt has {n_slots} {IMG_CONTEXT} tokens for {flat.shape[0]} image features")
        embeds = embeds.clone()
        embeds[torch.tensor(slots, device=self.device)] = flat
        return embeds

    def apply_scm(self, prepared: Prepared, embeds: torch.Tensor, scm: ScmConfig = ScmConfig()) -> torch.Tensor:
        positions = (torch.tensor(prepared.input_ids) == self.img_context_id).nonzero()
        if positions.numel() == 0 or prepared.first_scale_tokens <= 0:
            return embeds
        keep = scm_keep_indices(self.model.model.language_model, embeds, int(positions[0, 0]),
                                prepared.first_scale_tokens, ratio=scm.ratio, fix_off_by_one=scm.fix_off_by_one)
        return embeds[keep]

    def batch_image_features(self, batch: Sequence[Prepared]) -> torch.Tensor | None:
        """One vision call for every tile of the batch (``image_features`` moves them to the device in chunks)."""
        pixel = [p.pixel_values for p in batch if p.pixel_values is not None]
        return self.image_features(pixel) if pixel else None

    def shared_image_features(self, batch: Sequence[Prepared], features_cache=None, wanted=()
                              ) -> tuple[list[torch.Tensor | None], list[tuple[int, int]]]:
        """Per sample image features [N_i, 256, D] with one ViT pass per vision key (``Prepared.vision_key``, else
        the identity of its ``pixel_values``): features found in ``features_cache`` (``reuse.FeatureCache``) are not
        computed again, and those computed for a key in ``wanted`` are offered to it. Also returns per sample the
        (images, tiles) it actually ran through the ViT (a key's first sample in the batch counts them)."""
        keys = [_feature_key(p) for p in batch]
        found: dict = {}
        todo: dict = {}
        for p, key in zip(batch, keys):
            if key is None or key in found or key in todo:
                continue
            cached = features_cache.get(p.vision_key) if features_cache is not None and p.vision_key is not None \
                else None
            if cached is not None:
                found[key] = cached
            else:
                todo[key] = p
        if todo:
            computed = self.image_features([p.pixel_values for p in todo.values()])
            offset = 0
            for key, p in todo.items():
                found[key] = computed[offset:offset + p.num_tiles]
                offset += p.num_tiles
                if features_cache is not None:
                    features_cache.offer(p.vision_key, found[key], wanted)
        passes, seen = [], set()
        for p, key in zip(batch, keys):
            first = key in todo and key not in seen
            seen.add(key)
            passes.append((len(p.tiles_per_image), p.num_tiles) if first else (0, 0))
        return [found.get(key) for key in keys], passes

    @torch.no_grad()
    def build_sequences(self, batch: Sequence[Prepared], features: torch.Tensor | None = None,
                        scm: ScmConfig | None = None) -> list[torch.Tensor]:
        """Per-sample input embeddings [L_i, D]: image features scattered into the prompt, then SCM (``None``: off).
        ``features``: the batch's features concatenated in sample order, or a list with each sample's own."""
        if features is None:
            features = self.batch_image_features(batch)
        sequences, offset = [], 0
        for k, prepared in enumerate(batch):
            n = prepared.num_tiles
            if isinstance(features, (list, tuple)):
                own = features[k] if n else None
            else:
                own = features[offset:offset + n] if n else None
            offset += n
            embeds = self.embed(prepared, own)
            if scm is not None:
                embeds = self.apply_scm(prepared, embeds, scm)
            sequences.append(embeds)
        return sequences

    # ---- generation ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_prepared(self, batch: Sequence[Prepared], max_new_tokens: int = 512,
                          scm: ScmConfig | None = None, do_sample: bool = False,
                          profile=None, reuse: bool = True, features_cache=None, wanted=(),
                          **generate_kwargs) -> list[str]:
        """One batched forward: a single vision call for all tiles, left-padded embeddings, one ``generate``.
        ``profile`` (``models.profile.Profile``, benchmark only) times vision / prefill / decode.

        ``reuse`` (``models.reuse``): one ViT pass per vision key (``features_cache`` / ``wanted``: features kept
        for later batches); with SCM off, greedy and no other ``generate`` options, rows sharing an image prefix are
        prefilled from one copy of it (:func:`reuse.generate_shared`); a batch sharing nothing takes the unchanged
        path. Each sample's counters go to ``prepared.extra['reuse']`` (``reuse.counts``)."""
        t0 = profile.now() if profile is not None else 0.0
        t_start = time.perf_counter()
        if reuse:
            features, passes = self.shared_image_features(batch, features_cache, wanted)
        else:
            features = self.batch_image_features(batch)
            passes = [(len(p.tiles_per_image), p.num_tiles) for p in batch]
        t_vision = profile.now() if profile is not None else 0.0
        sequences = self.build_sequences(batch, features=features, scm=scm)
        lengths = [s.shape[0] for s in sequences]
        plan = None
        if reuse and scm is None and not do_sample and not generate_kwargs:
            groups = prefix_groups([_feature_key(p) for p in batch], [p.input_ids for p in batch], self.img_end_id)
            plan = plan_shared(groups, [p.input_ids for p in batch])
        mark = profile.first_token() if profile is not None else None
        if plan is None:
            inputs_embeds, attention_mask = left_pad(sequences)
            new_tokens = self._generate(inputs_embeds, attention_mask, max_new_tokens, do_sample, streamer=mark,
                                        **generate_kwargs)
            del inputs_embeds
            prefill = list(lengths)
        else:
            watch = FiniteLogitsWatch()
            new_tokens = generate_shared(self, sequences, plan, max_new_tokens, streamer=mark, watch=watch)
            watch.check()
            prefill = plan.prefill_tokens()
        rows = new_tokens.tolist()   # one device-to-host copy for the batch
        first_pass = max(plan.prefix_lengths) if plan is not None else None
        for r in self._rows_to_rerun_alone(lengths, rows, first_pass=first_pass):
            ones = torch.ones(1, sequences[r].shape[0], dtype=torch.long, device=sequences[r].device)
            rows[r] = self._generate(sequences[r][None], ones, max_new_tokens, do_sample, **generate_kwargs)[0].tolist()
            prefill[r] += lengths[r]
        answers = [self.decode(row) for row in rows]
        shared = set() if plan is None else {r for rows_ in plan.units if len(rows_) > 1 for r in rows_}
        for r, p in enumerate(batch):
            p.extra["reuse"] = counts(p, vit_passes=passes[r][0], vit_tiles=passes[r][1], prompt_tokens=lengths[r],
                                      prefill_tokens=prefill[r], shared=r in shared)
        record_token_stats(batch, lengths, rows, self.eos_token_id, time.perf_counter() - t_start,
                           self.img_context_id, scm)
        if profile is not None:
            profile.record(t0, t_vision, mark, profile.now(), sum(p.num_tiles for p in batch), lengths, rows,
                           self.eos_token_id)
        return answers

    def _rows_to_rerun_alone(self, lengths: Sequence[int], rows: Sequence[Sequence[int]],
                             first_pass: int | None = None) -> list[int]:
        """Rows whose batched answer may differ from batch size 1 because of length-switched RoPE (Phi-3 longrope).

        Native ``longrope`` (as InternVL's own Phi-3 ``su`` code) uses ``long_factor`` for a whole forward when
        ``max(position_ids) + 1 > original_max_position_embeddings``. In a left-padded batch that maximum is the
        longest row's, so a shorter row's step ``t`` (sequence length ``L_r + t`` alone, ``L_max + t`` batched) can
        switch earlier than it would alone. Such rows (found from the tokens each row actually generated) are
        generated again on their own; other models return [].

        ``first_pass`` (shared prefixes, ``reuse.generate_shared``): the length of the forward that prefilled the
        prefixes; a row whose prefix was encoded with the other factor than its whole prompt alone is rerun too.
        """
        rope = getattr(self.model.config.text_config, "rope_parameters", None) or {}
        if rope.get("rope_type") != "longrope" or (len(lengths) < 2 and first_pass is None):
            return []
        limit = int(rope["original_max_position_embeddings"])
        longest = max(lengths)
        rerun = []
        for r, (length, row) in enumerate(zip(lengths, rows)):
            steps = row.index(self.eos_token_id) + 1 if self.eos_token_id in row else len(row)
            first_diff, last_diff = max(0, limit - longest + 1), min(steps - 1, limit - length)
            if (length != longest and first_diff <= last_diff) or \
                    (first_pass is not None and (first_pass > limit) != (length > limit)):
                rerun.append(r)
        return rerun

    def _generate(self, inputs_embeds, attention_mask, max_new_tokens, do_sample, streamer=None,
                  **kwargs) -> torch.Tensor:
        from transformers import GenerationConfig, LogitsProcessorList

        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=1, eos_token_id=self.eos_token_id,
            pad_token_id=self.eos_token_id, bos_token_id=self.tokenizer.bos_token_id, use_cache=True, **kwargs)
        watch = FiniteLogitsWatch()
        out = self.model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  generation_config=config, streamer=streamer,
                                  logits_processor=LogitsProcessorList([watch]))
        watch.check()
        return out

    def decode(self, tokens: torch.Tensor | Iterable[int]) -> str:
        """Official post-processing: stop at the eos (``<|im_end|>`` / ``<|end|>``), decode without special tokens,
        split on the separator, strip."""
        ids = [int(t) for t in tokens]
        if self.eos_token_id in ids:
            ids = ids[:ids.index(self.eos_token_id)]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text.split(self.template.sep.strip())[0].strip()

    def generate(self, samples: Sequence[tuple[Sequence, str]], tiling: Tiling | None = None,
                 max_new_tokens: int = 512, scm: ScmConfig | None = None, batch_size: int | str = 8,
                 threads: int | None = None, reuse: bool = True, **generate_kwargs) -> list[str]:
        """Answer ``samples`` = [(images, question), ...]; returns the answers in input order.

        ``question`` may contain ``<image>`` placeholders (one per image); with none, ``'<image>\\n'`` is prepended,
        as the official ``chat()`` does. Runs the one pipeline (``models.pipeline``): samples are tiled on
        ``threads`` staging threads while the device answers, bucketed by estimated prompt length into batches of
        ``batch_size`` (or ``'auto'``), with the out-of-memory backoff. A sample may also be a :class:`Prepared`.
        ``scm``: a :class:`ScmConfig` switches SCM on (``None``: off). ``reuse`` (default on, ``models.reuse``):
        questions about the same image share its tiling, ViT pass and (SCM off) prompt-prefix prefill; ``False`` is
        the one-sample-at-a-time computation.
        """
        return generate(self, samples, tiling=tiling, batch_size=batch_size, max_new_tokens=max_new_tokens,
                        threads=threads, scm=scm, reuse=reuse, **generate_kwargs)

    def chat(self, images: Sequence, question: str, tiling=None, **kwargs) -> str:
        """One sample, batch size 1."""
        return self.generate([(images, question)], tiling=tiling, batch_size=1, **kwargs)[0]


class PromptTooLongError(ValueError):
    """A sample's prompt and answer would not fit the model's positions (found when it is prepared)."""


class NonFiniteLogitsError(RuntimeError):
    """The model produced NaN/inf logits: its answer would be meaningless (never scored)."""


class FiniteLogitsWatch:
    """A logits processor that notes non-finite logits without a device sync per step; ``check`` raises once."""

    def __init__(self):
        self.bad = None

    def __call__(self, input_ids, scores):
        flag = ~torch.isfinite(scores).all(dim=-1)
        self.bad = flag if self.bad is None else (self.bad | flag)
        return scores

    def check(self) -> None:
        if self.bad is not None and bool(self.bad.any()):
            rows = [i for i, b in enumerate(self.bad.tolist()) if b]
            raise NonFiniteLogitsError(f"non-finite logits (NaN/inf) for batch row(s) {rows}: the activations "
                                       "overflowed (try --dtype bf16 or fp32) or the weights are broken; "
                                       "answer not used")


def record_token_stats(batch: Sequence[Prepared], lengths: Sequence[int], rows, eos: int, seconds: float,
                       img_context_id: int, scm: ScmConfig | None) -> None:
    """``prepared.extra['stats']`` per answered sample (host arithmetic, no device sync): visual tokens after SCM
    (``apply_scm``'s bookkeeping: the first-scale block keeps ``int(high * ratio)``, the official off-by-one drops
    the token after it too), LLM prompt tokens, generated tokens (to the eos included), the batch's wall time."""
    for prepared, length, row in zip(batch, lengths, rows):
        ids = prepared.input_ids
        visual = sum(1 for t in ids if t == img_context_id)
        high = prepared.first_scale_tokens
        if scm is not None and visual and high > 0:
            start = ids.index(img_context_id)
            visual += int(high * scm.ratio) - high
            after = start + high
            if not scm.fix_off_by_one and after < len(ids) and ids[after] == img_context_id:
                visual -= 1
        prepared.extra["stats"] = {"visual_tokens": visual, "prompt_tokens": int(length),
                                   "generated_tokens": row.index(eos) + 1 if eos in row else len(row),
                                   "latency_s": round(seconds, 6), "batch": len(batch)}


def _feature_key(prepared: Prepared):
    """Which samples of a batch have the same image features: the vision key, else the very same pixel tensor."""
    if prepared.pixel_values is None or not prepared.tiles_per_image:
        return None
    if prepared.vision_key is not None:
        return ("key", prepared.vision_key)
    return ("tensor", id(prepared.pixel_values))


def _chunks(parts: Sequence[torch.Tensor], size: int) -> Iterable[torch.Tensor]:
    """Consecutive chunks of ``size`` rows across a list of tensors (views where a chunk lies in one tensor)."""
    pending: list[torch.Tensor] = []
    have = 0
    for part in parts:
        lo = 0
        while lo < part.shape[0]:
            take = min(size - have, part.shape[0] - lo)
            pending.append(part[lo:lo + take])
            have += take
            lo += take
            if have == size:
                yield pending[0] if len(pending) == 1 else torch.cat(pending)
                pending, have = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else torch.cat(pending)


def left_pad(sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack [L_i, D] embeddings into [B, L_max, D] with left padding (zeros) and the matching attention mask."""
    longest = max(s.shape[0] for s in sequences)
    dim = sequences[0].shape[-1]
    embeds = sequences[0].new_zeros(len(sequences), longest, dim)
    mask = torch.zeros(len(sequences), longest, dtype=torch.long, device=sequences[0].device)
    for row, seq in enumerate(sequences):
        embeds[row, longest - seq.shape[0]:] = seq
        mask[row, longest - seq.shape[0]:] = 1
    return embeds, mask
