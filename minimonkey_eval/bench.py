"""Throughput benchmark: the VLMEvalKit-style reference mode vs the batched, overlapped fast path, same workload.

``minimonkey-eval bench [--model-path DIR | --real-shapes] --workload docvqa|ocrbench|mme ...`` draws a synthetic
workload whose image sizes and tile settings mirror the real dataset (tiles from ``tile_profiles``, VLMEvalKit
profile), runs both modes in one process and prints one row per mode (also written as CSV and JSON):

* ``samples/s``: samples over wall time (preprocessing included);
* ``prefill tok/s``: prompt tokens (unpadded, after SCM) over LLM prefill time;
  ``decode tok/s``: tokens generated after the first one (up to and including ``<|im_end|>``) over decode time;
* time split, seconds: ``prep`` = time the GPU-feeding thread waited for inputs (image decode + tiling + tokenize:
  all of it in reference mode, what the workers did not hide in the fast path), ``vision`` = ViT + projector,
  ``prefill`` = embedding + (SCM) + padding + LLM prefill up to the first token, ``decode`` = later tokens + text
  decoding. Each boundary is bracketed by ``torch.cuda.synchronize()`` here in the benchmark only; the end of the
  prefill is observed through a ``generate`` streamer (its first ``put`` of new tokens), so the engine's decode
  loop carries no timers;
* ``peak mem``: ``torch.cuda.max_memory_allocated`` per mode ('n/a' on CPU);
* ``prefill MFU``: useful FLOPs of ViT + projector + LLM prefill over (vision + prefill) time, against the GPU's
  dense bf16 peak (:data:`PEAK_BF16_TFLOPS`; 'n/a' on CPU or for fp32). FLOPs count 2 per multiply-add:
  LLM ``2 * P_layers * tokens + 2 * layers * L^2 * H * d`` per sample (causal attention: half of QK^T and PV),
  the last position's LM head, and per tile ViT ``2 * P_vit * 1025 + 4 * layers * 1025^2 * D_v`` + patch embedding
  + projector; padding and SCM's ranking pass are not counted (not useful work);
* ``speedup`` = reference wall / fast wall; ``outputs match`` = greedy answers equal per sample.

Both modes get ``--warmup`` untimed samples first (CUDA context, cuBLAS handles, vlmeval import).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import platform
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserFacingError

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("results/bench")

# Dense bf16 tensor-core peaks, TFLOP/s (vendor datasheets, no sparsity). First substring of the CUDA device name
# that matches wins, so the more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),      # SXM5 / HBM3
    ("H200", 989.0),
    ("A100", 312.0),
)

COLUMNS: tuple[tuple[str, str], ...] = (  # (key, table header)
    ("mode", "mode"), ("samples", "samples"), ("batch_size", "batch"), ("num_workers", "workers"),
    ("attn", "attn"), ("wall_s", "wall s"), ("samples_per_s", "samples/s"), ("prefill_tok_s", "prefill tok/s"),
    ("decode_tok_s", "decode tok/s"), ("prep_s", "prep s"), ("vision_s", "vision s"), ("prefill_s", "prefill s"),
    ("decode_s", "decode s"), ("peak_mem_gib", "peak mem GiB"), ("prefill_mfu", "prefill MFU"),
    ("speedup", "speedup"), ("outputs_match", "outputs match"),
)


class BenchError(UserFacingError):
    """A bad benchmark option."""


# ---------------------------------------------------------------------------------------------------------------------
# Synthetic workloads
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """A synthetic stand-in for one benchmark: image sizes like the real set, its VLMEvalKit tiles and prompt."""

    name: str
    dataset: str                 # VLMEvalKit dataset name whose tile row (tile_profiles) is used
    kind: str                    # 'document' | 'crop' | 'photo'
    width: tuple[int, int]       # image width range (inclusive)
    height: tuple[int, int]
    questions: tuple[str, ...]
    suffix: str                  # what VLMEvalKit's MiniMonkey.build_prompt appends for this dataset


_SINGLE_WORD = "Answer the question using a single word or phrase."

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    # DocVQA pages: ~1700-2300 x 2200-2900 scans; MSAC 14-23 / 5-15 (VK set_max_num L286-290); VQA prompt.
    Workload("docvqa", "DocVQA_VAL", "document", (1700, 2300), (2200, 2900),
             ("What is the date mentioned in this letter?", "What is the total amount?",
              "Who is the sender of this memo?", "What is the title of the document?"), "\n" + _SINGLE_WORD),
    # OCRBench word/line crops: 300-800 x 100-200; MSAC 9-24 / 5-8 (L296-300); VQA prompt.
    Workload("ocrbench", "OCRBench", "crop", (300, 800), (100, 200),
             ("what is written in the image?", "What is the number in the image?",
              "what is the word in the image?"), "\n" + _SINGLE_WORD),
    # MME photos: ~640-1000 x 480-750; MSAC 5-11 / 2-6 (L306-310); Y/N prompt with a space.
    Workload("mme", "MME", "photo", (640, 1000), (480, 750),
             ("Is there a dog in this image?", "Are there two cars in this image?", "Is the sky blue in this image?"),
             " " + _SINGLE_WORD),
)}

_WORDS = ("invoice total amount date memo department budget report account payment received balance quarter annual "
          "company address phone number reference subject meeting committee director research program project "
          "schedule page table figure summary revenue cost tax net gross item quantity price description").split()


def workload_tiling(workload: Workload):
    """The MSAC tiling VLMEvalKit's MiniMonkey wrapper uses for the workload's dataset."""
    from .models.engine import Tiling
    from .models.registry import MINIMONKEY
    from .models.tile_profiles import resolve_tiles

    s = resolve_tiles(MINIMONKEY, workload.dataset)
    return Tiling.msac(s.min_num, s.max_num, s.min_num2, s.max_num2)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def make_image(kind: str, size: tuple[int, int], rng: random.Random):
    """A deterministic synthetic image: a text page, a word crop, or a photo-like scene."""
    import numpy as np
    from PIL import Image, ImageDraw

    w, h = size
    if kind == "document":
        img = Image.new("RGB", size, (250, 250, 246))
        draw = ImageDraw.Draw(img)
        fs = rng.randint(24, 34)
        margin = w // 12
        draw.text((margin, margin), " ".join(rng.choice(_WORDS).upper() for _ in range(4)), fill=(10, 10, 10),
                  font=_font(fs * 2))
        y, font = margin + fs * 4, _font(fs)
        while y < h - margin - fs:
            if rng.random() < 0.08:  # a ruled table row
                draw.rectangle((margin, y, w - margin, y + int(fs * 1.6)), outline=(40, 40, 40), width=2)
                for k in range(1, 4):
                    x = margin + k * (w - 2 * margin) // 4
                    draw.line((x, y, x, y + int(fs * 1.6)), fill=(40, 40, 40), width=2)
            line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14)))
            if rng.random() < 0.3:
                date = f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/19{rng.randint(50, 99)}"
                line += f" {date} ${rng.randint(10, 9999)}.00"
            draw.text((margin, y), line, fill=(25, 25, 25), font=font)
            y += int(fs * 1.7)
        return img
    if kind == "crop":
        bg = tuple(rng.randint(170, 250) for _ in range(3))
        img = Image.new("RGB", size, bg)
        draw = ImageDraw.Draw(img)
        text = " ".join(rng.choice(_WORDS).upper() for _ in range(rng.randint(1, 2)))
        ink = tuple(rng.randint(0, 80) for _ in range(3))
        draw.text((w // 12, h // 5), text, fill=ink, font=_font(max(12, h // 2)))
        return img
    if kind == "photo":
        gen = np.random.default_rng(rng.randrange(1 << 30))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([(xx / w) * gen.uniform(60, 200) + (yy / h) * gen.uniform(30, 120) + gen.uniform(0, 60)
                         for _ in range(3)], axis=-1)
        noise = gen.normal(0, 12, size=(h, w, 3))
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(rng.randint(4, 9)):
            x0, y0 = rng.randint(0, w - 40), rng.randint(0, h - 40)
            x1, y1 = rng.randint(x0 + 20, min(w, x0 + w // 2)), rng.randint(y0 + 20, min(h, y0 + h // 2))
            fill = tuple(rng.randint(0, 255) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        return img
    raise ValueError(f"unknown image kind {kind!r}")


@dataclass
class BenchSample:
    path: str
    question: str
    size: tuple[int, int]


def make_workload(workload: Workload, n: int, directory: str | Path, seed: int = 0) -> list[BenchSample]:
    """Write ``n`` JPEG images (quality 90, as VLMEvalKit dumps TSV images) and their prompts into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{workload.name}-{seed}")
    samples = []
    for i in range(n):
        size = (rng.randint(*workload.width), rng.randint(*workload.height))
        path = directory / f"{workload.name}_{i:04d}.jpg"
        make_image(workload.kind, size, rng).save(path, format="JPEG", quality=90)
        samples.append(BenchSample(str(path), rng.choice(workload.questions) + workload.suffix, size))
    return samples


# ---------------------------------------------------------------------------------------------------------------------
# FLOPs and peaks
# ---------------------------------------------------------------------------------------------------------------------
def peak_bf16_flops(device_name: str) -> float | None:
    for needle, tflops in PEAK_BF16_TFLOPS:
        if needle.lower() in device_name.lower():
            return tflops * 1e12
    return None


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def llm_prefill_flops(text_config, seq_lens: list[int]) -> float:
    """2 * (per-token matmul parameters) * tokens + causal attention + the last position's LM head, per sample."""
    D, F, N = text_config.hidden_size, text_config.intermediate_size, text_config.num_hidden_layers
    H, Hkv = text_config.num_attention_heads, text_config.num_key_value_heads
    d = getattr(text_config, "head_dim", None) or D // H
    per_layer = D * H * d + 2 * D * Hkv * d + H * d * D + 3 * D * F
    total = 0.0
    for L in seq_lens:
        total += 2.0 * N * per_layer * L + 2.0 * N * H * d * L * L + 2.0 * D * text_config.vocab_size
    return total


def vision_flops(config, tiles: int) -> float:
    """ViT (bidirectional attention over 1025 tokens) + patch embedding + pixel-shuffle projector, per tile."""
    v, t = config.vision_config, config.text_config
    Dv, Iv, Nv = v.hidden_size, v.intermediate_size, v.num_hidden_layers
    patch, side = _first(v.patch_size), _first(v.image_size) // _first(v.patch_size)
    T = side * side + 1
    vit = 2.0 * Nv * (4 * Dv * Dv + 2 * Dv * Iv) * T + 4.0 * Nv * T * T * Dv
    embed = 2.0 * 3 * patch * patch * Dv * side * side
    tokens = int(side * side * config.downsample_ratio ** 2)
    proj_in = int(Dv / config.downsample_ratio ** 2)
    projector = 2.0 * tokens * (proj_in * t.hidden_size + t.hidden_size * t.hidden_size)
    return tiles * (vit + embed + projector)


# ---------------------------------------------------------------------------------------------------------------------
# Instrumented batch runner (benchmark only)
# ---------------------------------------------------------------------------------------------------------------------
class _FirstTokenMark:
    """A ``generate`` streamer that records when the first new token reaches the host (= end of prefill).

    ``generate`` puts the (empty) prompt ids first, then each new token after a ``.cpu()`` copy, which waits for
    the device, so the time of the second ``put`` is the end of the prefill forward + first argmax.
    """

    def __init__(self):
        self.calls = 0
        self.time: float | None = None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:
            self.time = time.perf_counter()

    def end(self) -> None:
        pass


@dataclass
class StageTimes:
    prep_s: float = 0.0
    vision_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    failed_s: float = 0.0        # batches that raised (out of memory) before being split and retried
    wall_s: float = 0.0
    batches: int = 0
    samples: int = 0
    tiles: int = 0
    prompt_tokens: int = 0
    padded_tokens: int = 0
    generated_tokens: int = 0
    decode_tokens: int = 0
    seq_lens: list = field(default_factory=list)


class StageTimer:
    """``run_batch`` with the same steps as ``Engine.generate_prepared``, timed per stage (benchmark only)."""

    def __init__(self, device):
        import torch

        self.cuda = getattr(device, "type", str(device)) == "cuda"
        self._torch = torch
        self.times = StageTimes()
        self._last = None
        self._start = None

    def now(self) -> float:
        if self.cuda:
            self._torch.cuda.synchronize()
        return time.perf_counter()

    def start(self) -> None:
        self.times = StageTimes()
        self._start = self._last = self.now()

    def stop(self) -> StageTimes:
        self.times.wall_s = self.now() - self._start
        return self.times

    def run_batch(self, engine, batch, max_new_tokens: int = 512, scm: bool = False, scm_ratio: float = 0.5,
                  scm_fix_off_by_one: bool = False, do_sample: bool = False, **generate_kwargs) -> list[str]:
        t0 = self.now()
        self.times.prep_s += t0 - self._last
        try:
            return self._run_batch(engine, batch, t0, max_new_tokens, scm, scm_ratio, scm_fix_off_by_one, do_sample,
                                   **generate_kwargs)
        except BaseException:
            self._last = self.now()
            self.times.failed_s += self._last - t0   # e.g. an out-of-memory batch that is split and retried
            raise

    def _run_batch(self, engine, batch, t0, max_new_tokens, scm, scm_ratio, scm_fix_off_by_one, do_sample,
                   **generate_kwargs) -> list[str]:
        from .models.engine import left_pad

        torch, t = self._torch, self.times
        with torch.no_grad():
            features = engine.batch_image_features(batch)
            t1 = self.now()
            sequences = engine.build_sequences(batch, features=features, scm=scm, scm_ratio=scm_ratio,
                                               scm_fix_off_by_one=scm_fix_off_by_one)
            inputs_embeds, attention_mask = left_pad(sequences)
            mark = _FirstTokenMark()
            new_tokens = engine._generate(inputs_embeds, attention_mask, max_new_tokens, do_sample,
                                          streamer=mark, **generate_kwargs)
            t2 = self.now()
            answers = [engine.decode(row) for row in new_tokens]
        t3 = self.now()
        first = mark.time if mark.time is not None else t2
        t.vision_s += t1 - t0
        t.prefill_s += first - t1
        t.decode_s += (t2 - first) + (t3 - t2)
        t.batches += 1
        t.samples += len(batch)
        t.tiles += sum(p.num_tiles for p in batch)
        lens = [s.shape[0] for s in sequences]
        t.seq_lens.extend(lens)
        t.prompt_tokens += sum(lens)
        t.padded_tokens += len(lens) * max(lens)
        for row in new_tokens.tolist():
            n = row.index(engine.eos_token_id) + 1 if engine.eos_token_id in row else len(row)
            t.generated_tokens += n
            t.decode_tokens += max(0, n - 1)
        self._last = self.now()
        return answers


# ---------------------------------------------------------------------------------------------------------------------
# Running both modes
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class ModeResult:
    mode: str
    answers: list
    times: StageTimes
    batch_size: int
    num_workers: int
    attn: str
    peak_mem_bytes: int | None


def _reset_peak(engine) -> None:
    import torch

    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)


def _peak(engine) -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated(engine.device)) if engine.device.type == "cuda" else None


def run_reference(engine, samples: list, tiling, max_new_tokens: int, scm: bool = False) -> ModeResult:
    from .reference import reference_stream

    timer = StageTimer(engine.device)
    answers = [None] * len(samples)
    _reset_peak(engine)
    timer.start()
    for index, answer in reference_stream(engine, samples, tiling=tiling, max_new_tokens=max_new_tokens, scm=scm,
                                          run_batch=timer.run_batch):
        answers[index] = answer
    times = timer.stop()
    return ModeResult("reference", answers, times, 1, 0, "eager", _peak(engine))


def run_fast(engine, samples: list, tiling, max_new_tokens: int, batch_size: int, num_workers: int,
             scm: bool = False) -> ModeResult:
    from .models.pipeline import generate_stream

    timer = StageTimer(engine.device)
    answers = [None] * len(samples)
    _reset_peak(engine)
    timer.start()
    for index, answer in generate_stream(engine, samples, tiling=tiling, batch_size=batch_size,
                                         num_workers=num_workers, max_new_tokens=max_new_tokens, scm=scm,
                                         run_batch=timer.run_batch):
        answers[index] = answer
    times = timer.stop()
    attn = engine.model.config.text_config._attn_implementation
    return ModeResult("fast", answers, times, batch_size, num_workers, attn, _peak(engine))


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def _rate(num: float, seconds: float) -> float | None:
    return num / seconds if seconds > 0 else None


def summarize(result: ModeResult, engine, reference: ModeResult | None, device_name: str) -> dict:
    """One table row (raw numbers; formatting happens when printing)."""
    t = result.times
    peak = peak_bf16_flops(device_name) if engine.device.type == "cuda" else None
    mfu = None
    if peak and str(engine.dtype).endswith(("bfloat16", "float16")) and (t.vision_s + t.prefill_s) > 0:
        flops = vision_flops(engine.model.config, t.tiles) + llm_prefill_flops(engine.model.config.text_config,
                                                                               t.seq_lens)
        mfu = flops / ((t.vision_s + t.prefill_s) * peak)
    row = {
        "mode": result.mode, "samples": t.samples, "batch_size": result.batch_size,
        "num_workers": result.num_workers, "attn": result.attn, "wall_s": t.wall_s,
        "samples_per_s": _rate(t.samples, t.wall_s), "prefill_tok_s": _rate(t.prompt_tokens, t.prefill_s),
        "decode_tok_s": _rate(t.decode_tokens, t.decode_s), "prep_s": t.prep_s, "vision_s": t.vision_s,
        "prefill_s": t.prefill_s, "decode_s": t.decode_s,
        "peak_mem_gib": None if result.peak_mem_bytes is None else result.peak_mem_bytes / 2 ** 30,
        "prefill_mfu": mfu, "speedup": 1.0, "outputs_match": "-",
        "tiles": t.tiles, "prompt_tokens": t.prompt_tokens, "padded_tokens": t.padded_tokens,
        "generated_tokens": t.generated_tokens, "batches": t.batches, "failed_s": t.failed_s,
    }
    if reference is not None:
        row["speedup"] = reference.times.wall_s / t.wall_s if t.wall_s > 0 else None
        same = sum(a == b for a, b in zip(result.answers, reference.answers))
        row["outputs_match"] = f"{same}/{len(reference.answers)}"
    return row


def format_table(rows: list[dict]) -> str:
    cells = [[header for _, header in COLUMNS]]
    for row in rows:
        out = []
        for key, _ in COLUMNS:
            value = row.get(key)
            if key == "prefill_mfu" and value is not None:
                out.append(f"{100 * value:.1f}%")
            elif key == "speedup" and value is not None:
                out.append(f"{value:.2f}x")
            elif key in ("prefill_tok_s", "decode_tok_s", "samples_per_s"):
                out.append(_fmt(value, 1 if key != "samples_per_s" else 3))
            else:
                out.append(_fmt(value))
        cells.append(out)
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def device_description(engine) -> str:
    import torch

    if engine.device.type == "cuda":
        return torch.cuda.get_device_name(engine.device)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def run_bench(engine, workload: Workload, samples: list[BenchSample], tiling, max_new_tokens: int = 64,
              batch_size: int | str = "auto", num_workers: int = 0, warmup: int = 1, scm: bool = False) -> dict:
    """Run reference and fast modes on the same samples; returns the report (rows + metadata + per-sample data)."""
    from .models.pipeline import Preparer, auto_batch_size, estimate_tokens
    from .reference import reference_preprocessor

    pairs = [([s.path], s.question) for s in samples]
    preprocessor = reference_preprocessor(tiling)  # imports vlmeval now, not inside the timed reference run
    preparer = Preparer.from_engine(engine)
    lengths = [estimate_tokens(preparer, images, question, tiling) for images, question in pairs]
    if batch_size == "auto":
        batch_size = auto_batch_size(engine, max(lengths), max_new_tokens)
    if warmup > 0:
        warm = pairs[:warmup]
        run_reference(engine, warm, tiling, max_new_tokens, scm=scm)
        run_fast(engine, warm, tiling, max_new_tokens, batch_size=min(batch_size, len(warm)), num_workers=0, scm=scm)
    reference = run_reference(engine, pairs, tiling, max_new_tokens, scm=scm)
    fast = run_fast(engine, pairs, tiling, max_new_tokens, batch_size=batch_size, num_workers=num_workers, scm=scm)
    device_name = device_description(engine)
    rows = [summarize(reference, engine, None, device_name), summarize(fast, engine, reference, device_name)]
    return {
        "workload": workload.name, "dataset": workload.dataset,
        "tiling": {"kind": tiling.kind, "min_num": tiling.min_num, "max_num": tiling.max_num,
                   "min_num2": tiling.min_num2, "max_num2": tiling.max_num2},
        "max_new_tokens": max_new_tokens, "scm": scm, "warmup": warmup,
        "device": device_name, "dtype": str(engine.dtype).replace("torch.", ""), "model_path": engine.path,
        "reference_preprocess": preprocessor, "estimated_tokens": lengths, "rows": rows,
        "samples": [{"index": i, "path": Path(s.path).name, "size": list(s.size), "question": s.question,
                     "estimated_tokens": lengths[i], "reference": reference.answers[i], "fast": fast.answers[i]}
                    for i, s in enumerate(samples)],
        "host": {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count()},
    }


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    device = "cuda" if not report["device"].startswith("cpu") else "cpu"
    stem = out_dir / f"bench_{report['workload']}_{device}_{stamp}"
    csv_path, json_path = stem.with_suffix(".csv"), stem.with_suffix(".json")
    keys = [k for k, _ in COLUMNS] + [k for k in report["rows"][0] if k not in dict(COLUMNS)]
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["workload", "device", "dtype"] + keys)
        writer.writeheader()
        for row in report["rows"]:
            writer.writerow({"workload": report["workload"], "device": report["device"], "dtype": report["dtype"],
                             **{k: row.get(k) for k in keys}})
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return csv_path, json_path


# ---------------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------------
def _batch_size(text: str):
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return value


def default_num_workers() -> int:
    """One core for the main (GPU-feeding) thread, the rest for preprocessing, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` on a ``subparsers`` object (from ``ArgumentParser.add_subparsers``); imports no torch."""
    p = subparsers.add_parser("bench", help="throughput: VLMEvalKit-style reference mode vs the batched fast path",
                              description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-path", type=Path, help="original-format checkpoint directory")
    src.add_argument("--real-shapes", action="store_true",
                     help="write an InternVL2-2B-sized random bf16 checkpoint (~4.4 GB) to a temp dir and use it")
    p.add_argument("--workload", default="docvqa", choices=sorted(WORKLOADS))
    p.add_argument("--samples", type=int, default=32, help="number of synthetic samples (default 32)")
    p.add_argument("--batch-size", type=_batch_size, default="auto", help="fast-path batch size, N or 'auto'")
    p.add_argument("--num-workers", type=int, default=default_num_workers(),
                   help=f"fast-path preprocessing workers (default {default_num_workers()}: cores - 1, at most 8)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--tiles", default=None, help="override the workload's MSAC tiles, 'MIN-MAX/MIN2-MAX2'")
    p.add_argument("--warmup", type=int, default=1, help="untimed samples per mode before timing (default 1)")
    p.add_argument("--scm", action="store_true", help="enable SCM in both modes")
    p.add_argument("--seed", type=int, default=0)
    from .options import add_engine_options

    add_engine_options(p, attn_help="fast-path attention (the reference mode always runs eager)")
    p.add_argument("--normalize-on-device", action="store_true",
                   help="fast path: uint8 tiles normalised on the device (the reference mode is unaffected)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where CSV + JSON go (default {DEFAULT_OUT}/)")
    p.set_defaults(func=cmd_bench)
    return p


def _tiling_from(args, workload: Workload):
    if args.tiles is None:
        return workload_tiling(workload)
    from .models.engine import Tiling
    from .models.tile_profiles import parse_tiles

    try:
        s = parse_tiles(args.tiles, args.max_new_tokens)
    except ValueError as exc:
        raise BenchError(f"--tiles: {exc}") from None
    if s.kind != "msac":
        raise BenchError(f"--tiles {args.tiles!r}: the benchmark needs MSAC tiles 'MIN-MAX/MIN2-MAX2'")
    return Tiling.msac(s.min_num, s.max_num, s.min_num2, s.max_num2)


def cmd_bench(args) -> int:
    """``minimonkey-eval bench``: prints the table, writes CSV + JSON to ``--out``."""
    if args.samples < 1:
        raise BenchError(f"--samples must be >= 1, got {args.samples}")
    if args.max_new_tokens < 1:
        raise BenchError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.num_workers < 0:
        raise BenchError(f"--num-workers must be >= 0, got {args.num_workers}")
    workload = WORKLOADS[args.workload]
    tiling = _tiling_from(args, workload)
    from .models import Engine

    with contextlib.ExitStack() as stack:
        model_path = args.model_path
        if model_path is None:
            from .models.tiny_checkpoint import write_checkpoint

            model_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mm-bench-ckpt-")))
            print(f"writing a real-shape random checkpoint (~4.4 GB) to {model_path} ...", flush=True)
            write_checkpoint(model_path, real_shapes=True, seed=args.seed)
        engine = Engine.from_pretrained(model_path, dtype=args.dtype, device=args.device,
                                        attn_implementation=args.attn)
        engine.normalize_on_device = args.normalize_on_device   # only the fast path's Preparer reads it
        image_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mm-bench-img-"))
        samples = make_workload(workload, args.samples, image_dir, seed=args.seed)
        report = run_bench(engine, workload, samples, tiling, max_new_tokens=args.max_new_tokens,
                           batch_size=args.batch_size, num_workers=args.num_workers, warmup=args.warmup, scm=args.scm)
    report["real_shapes"] = bool(args.real_shapes and args.model_path is None)
    t = report["tiling"]
    print(f"workload {workload.name} ({workload.dataset}-like, tiles {t['min_num']}-{t['max_num']}/"
          f"{t['min_num2']}-{t['max_num2']}), {args.samples} samples, max_new_tokens {args.max_new_tokens}, "
          f"device {report['device']}, dtype {report['dtype']}")
    print(f"reference preprocessing: {report['reference_preprocess']}")
    print(format_table(report["rows"]))
    csv_path, json_path = write_report(report, args.out)
    print(f"wrote {csv_path} and {json_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``scripts/bench_throughput.py``): the ``bench`` sub-command's options, no sub-command."""
    import sys

    parser = argparse.ArgumentParser(prog="bench_throughput")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command")
    add_bench_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(["bench", *[a for a in argv if a not in ("-v", "--verbose")]])
    logging.basicConfig(level=logging.INFO if any(a in ("-v", "--verbose") for a in argv) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return cmd_bench(args)
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
