"""Throughput benchmark of ``run``'s own path: the VLMEvalKit-style reference, the fast mode without and with reuse.

``minimonkey-eval bench [--model-path DIR | --real-shapes] --workload docvqa|infovqa|ocrbench|pope|mme --samples N``
writes a synthetic VLMEvalKit-shaped TSV of the workload (``workloads.py``: image sizes, MSAC tiles, questions per
image and answer length like the real set), then runs it through the runner (``eval.launch.make_runner``: prompts,
staging, batching, backoff, prediction store; scoring skipped) in three modes, in one process, on one loaded engine
(:data:`MODES`):

* ``reference``: VLMEvalKit's way (``RunOptions.reference``): batch 1, one sample at a time in dataset order, no
  overlap, VLMEvalKit's own ``load_image``/``load_image2`` tiles, eager attention;
* ``fast-no-reuse``: the fast path answering every question on its own (``RunOptions.reuse=False``): staging
  threads overlapped with the device, length-bucketed batches (``--batch-size``, default ``auto``), SDPA;
* ``fast``: what ``run`` does: the same, computing each image once (``models.reuse``: the TSV's image references
  group the questions, one tiling and ViT pass per image, SCM off one prefill of the shared prompt prefix).

The answer length is the workload's (``Workload.answer_tokens``: the random checkpoint never stops early, so the
bench decodes a realistic number of tokens) unless ``--max-new-tokens`` is given. Per mode (also written as CSV +
JSON under ``--out``): ``samples/s`` (over the inference wall time), prompt and generated tokens/s (over the same
wall time), the time split from ``models.profile.Profile`` (``staging wait``: the device-feeding thread waiting for
prompts/tiles/tokens; ``vision``; ``prefill`` up to the first token; ``decode``), ``padding`` waste ((padded -
real) / padded prompt tokens), peak device memory (``torch.cuda.max_memory_allocated``; n/a on CPU), prefill MFU on
CUDA (FLOPs of the ViT passes and prefilled tokens actually run over vision + prefill time against the GPU's dense
bf16 peak, :data:`PEAK_BF16_TFLOPS`; n/a on CPU or fp32), the reuse counters summed from the prediction records
(``vit_passes`` against the workload's ``unique_images``, ``prefill_tokens`` computed against ``prompt_tokens``
requested, and ``ideal_prefill_tokens`` = every image's prompt prefix once + every question's own suffix),
``outputs match`` (greedy answers equal to the reference's, per sample) and the speed-up over each of the other
modes (samples/s over samples/s). Images are dumped from the TSV once before timing (every mode reads the same
files); each mode first answers ``--warmup`` untimed samples.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import time
from pathlib import Path

from minimonkey_eval.datasets.workloads import Workload, unique_images, workload_tiling
from minimonkey_eval.models.settings import ScmConfig

logger = logging.getLogger(__name__)


# Dense bf16 tensor-core peaks, TFLOP/s (vendor datasheets, no sparsity). First substring of the CUDA device name
# that matches wins, so the more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),      # SXM5 / HBM3
    ("H200", 989.0),
    ("A100", 312.0),
)

MODES: tuple[str, ...] = ("reference", "fast-no-reuse", "fast")
SPEEDUP_KEYS = {mode: "speedup_vs_" + mode.replace("-", "_") for mode in MODES}

COLUMNS: tuple[tuple[str, str], ...] = (  # (key, table header)
    ("mode", "mode"), ("samples", "samples"), ("unique_images", "images"), ("batch_size", "batch"),
    ("threads", "threads"), ("attn", "attn"), ("wall_s", "wall s"), ("samples_per_s", "samples/s"),
    ("prompt_tok_s", "prompt tok/s"), ("generated_tok_s", "gen tok/s"), ("staging_wait_s", "staging wait s"),
    ("vision_s", "vision s"), ("prefill_s", "prefill s"), ("decode_s", "decode s"), ("padding_waste", "padding"),
    ("peak_mem_gib", "peak mem GiB"), ("prefill_mfu", "prefill MFU"), ("vit_passes", "ViT passes"),
    ("prompt_tokens", "prompt tok"), ("prefill_tokens", "prefill tok"), ("outputs_match", "outputs match"),
    *((SPEEDUP_KEYS[m], f"vs {m}") for m in MODES),
)


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
# Running a mode through the runner
# ---------------------------------------------------------------------------------------------------------------------
def run_mode(engine, mode: str, workload: Workload, data_root: Path, work_dir: Path, tiles: str | None,
             max_new_tokens: int, batch_size, threads: int | None, scm: ScmConfig | None = None,
             limit: int | None = None, run_name: str | None = None, progress: bool | None = None):
    """One mode of :data:`MODES` through ``Runner.run`` (scoring skipped): ``(answers by index, Profile, peak bytes |
    None, runner, prediction records by index)``."""
    import torch

    from minimonkey_eval.eval.launch import make_runner
    from minimonkey_eval.eval.run.options import RunOptions
    from minimonkey_eval.eval.run.store import PredictionStore
    from minimonkey_eval.models.profile import Profile
    from minimonkey_eval.models.registry import PAIR_NEW

    if mode not in MODES:
        raise ValueError(f"unknown bench mode {mode!r}; choose from {', '.join(MODES)}")
    reference = mode == "reference"
    opts = RunOptions(model=PAIR_NEW, datasets=[workload.dataset], model_path=engine.path,
                      data_root=str(data_root), work_dir=str(work_dir), run_name=run_name or mode, tiles=tiles,
                      max_new_tokens=max_new_tokens, batch_size=1 if reference else batch_size, scm=scm,
                      limit=limit, stage_threads=threads, score=False, reference=reference, overwrite=True,
                      progress=progress, reuse=mode == "fast")
    profile = Profile.for_device(engine.device)
    cuda = engine.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(engine.device)
        torch.cuda.reset_peak_memory_stats(engine.device)
    runner = make_runner(opts, engine=engine)
    result = runner.run(profile)
    peak = int(torch.cuda.max_memory_allocated(engine.device)) if cuda else None
    records = PredictionStore(result.run_dir, workload.dataset).load()
    answers = {key: (None if r.get("failed") else r["prediction"]) for key, r in records.items()}
    return answers, profile, peak, runner, records


def reuse_counts(records: dict, groups: dict[str, str]) -> dict:
    """The reuse counters of a mode's prediction records (``record['reuse']``, ``models.reuse.counts``), summed, and
    ``ideal_prefill_tokens``: per image group (``groups``: index -> group) its prompt prefix once, plus every
    record's own suffix (prompt - prefix)."""
    totals = {"vit_passes": 0, "vit_tiles": 0, "prefill_tokens": 0, "counted_prompt_tokens": 0}
    ideal, prefixes = 0, {}
    for key, record in records.items():
        counts = record.get("reuse") if not record.get("failed") else None
        if not isinstance(counts, dict):
            continue
        totals["vit_passes"] += counts.get("vit_passes", 0)
        totals["vit_tiles"] += counts.get("vit_tiles", 0)
        totals["prefill_tokens"] += counts.get("prefill_tokens", 0)
        totals["counted_prompt_tokens"] += counts.get("prompt_tokens", 0)
        prefix = min(counts.get("prefix_tokens", 0), counts.get("prompt_tokens", 0))
        ideal += counts.get("prompt_tokens", 0) - prefix
        prefixes[groups.get(str(key), ("row", key))] = prefix
    totals["ideal_prefill_tokens"] = ideal + sum(prefixes.values())
    return totals


def summarize(mode: str, profile, peak: int | None, engine, batch_size, threads, attn: str,
              answers: dict, reference: dict | None, device_name: str, counts: dict | None = None,
              images: int | None = None) -> dict:
    """One table row (raw numbers; formatting happens when printing). ``counts``: :func:`reuse_counts` of the
    mode's records; ``images``: the workload's unique images. The speed-ups are :func:`add_speedups`'."""
    t = profile
    counts = counts or {}
    peak_flops = peak_bf16_flops(device_name) if engine.device.type == "cuda" else None
    mfu = None
    if peak_flops and str(engine.dtype).endswith(("bfloat16", "float16")) and (t.vision_s + t.prefill_s) > 0:
        # the work actually done: ViT tiles encoded, prefill FLOPs scaled by the tokens actually prefilled
        done = counts.get("prefill_tokens") or t.prompt_tokens
        share = done / t.prompt_tokens if t.prompt_tokens else 1.0
        flops = vision_flops(engine.model.config, counts.get("vit_tiles") or t.tiles) + \
            share * llm_prefill_flops(engine.model.config.text_config, t.seq_lens)
        mfu = flops / ((t.vision_s + t.prefill_s) * peak_flops)
    rate = _rate(t.samples, t.wall_s)
    row = {
        "mode": mode, "samples": t.samples, "batch_size": batch_size, "threads": threads, "attn": attn,
        "wall_s": t.wall_s, "samples_per_s": rate, "prompt_tok_s": _rate(t.prompt_tokens, t.wall_s),
        "generated_tok_s": _rate(t.generated_tokens, t.wall_s), "staging_wait_s": t.staging_wait_s,
        "vision_s": t.vision_s, "prefill_s": t.prefill_s, "decode_s": t.decode_s, "padding_waste": t.padding_waste,
        "peak_mem_gib": None if peak is None else peak / 2 ** 30, "prefill_mfu": mfu,
        "unique_images": images, "vit_passes": counts.get("vit_passes"), "prompt_tokens": t.prompt_tokens,
        "prefill_tokens": counts.get("prefill_tokens"), "outputs_match": "-",
        **{key: None for key in SPEEDUP_KEYS.values()}, "speedup": None,
        "tiles": t.tiles, "vit_tiles": counts.get("vit_tiles"),
        "ideal_prefill_tokens": counts.get("ideal_prefill_tokens"), "padded_tokens": t.padded_tokens,
        "generated_tokens": t.generated_tokens, "batches": t.batches, "failed_batches": t.failed_batches,
    }
    if reference is not None and mode != "reference":
        same = sum(answers.get(k) is not None and answers.get(k) == v for k, v in reference.items())
        row["outputs_match"] = f"{same}/{len(reference)}"
    return row


def add_speedups(rows: list[dict]) -> None:
    """Every row's speed-up over each other mode (its samples/s over theirs; None for itself); ``speedup`` is the one
    over the reference (1.0 for the reference itself)."""
    rates = {row["mode"]: row.get("samples_per_s") for row in rows}
    for row in rows:
        for mode, key in SPEEDUP_KEYS.items():
            other, mine = rates.get(mode), row.get("samples_per_s")
            row[key] = mine / other if mode != row["mode"] and mine and other else None
        row["speedup"] = 1.0 if row["mode"] == "reference" else row.get(SPEEDUP_KEYS["reference"])


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def _rate(num: float, seconds: float) -> float | None:
    return num / seconds if seconds > 0 else None


def format_table(rows: list[dict]) -> str:
    cells = [[header for _, header in COLUMNS]]
    for row in rows:
        out = []
        for key, _ in COLUMNS:
            value = row.get(key)
            if key in ("prefill_mfu", "padding_waste") and value is not None:
                out.append(f"{100 * value:.1f}%")
            elif key in SPEEDUP_KEYS.values() or key == "speedup":
                out.append("-" if value is None else f"{value:.2f}x")
            elif key in ("prompt_tok_s", "generated_tok_s", "samples_per_s"):
                out.append(fmt(value, 1 if key != "samples_per_s" else 3))
            else:
                out.append(fmt(value))
        cells.append(out)
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(reports: list[dict]) -> str:
    """The rows of several bench reports as one markdown table (``scripts/gpu_check.sh``)."""
    keys = [k for k, _ in COLUMNS]
    lines = ["| workload | " + " | ".join(h for _, h in COLUMNS) + " |", "|---" * (len(keys) + 1) + "|"]
    for report in reports:
        table = format_table(report["rows"]).splitlines()[2:]
        for line in table:
            lines.append(f"| {report['workload']} | " + " | ".join(c.strip() for c in line.split(" | ")) + " |")
    return "\n".join(lines)


def device_description(engine) -> str:
    import torch

    if engine.device.type == "cuda":
        return torch.cuda.get_device_name(engine.device)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def run_bench(engine, workload: Workload, samples: int, work_dir: str | Path, tiles: str | None = None,
              max_new_tokens: int | None = None, batch_size="auto", threads: int | None = None, warmup: int = 1,
              scm: ScmConfig | None = None, seed: int = 0, normalize_on_device: bool = False,
              progress: bool | None = None, modes: tuple[str, ...] = MODES) -> dict:
    """Write the workload, run ``modes`` (default :data:`MODES`; the reference first) through the runner; returns the
    report. ``max_new_tokens`` None: the workload's answer length."""
    from minimonkey_eval.datasets.image_groups import tsv_image_groups
    from minimonkey_eval.datasets.local import load_dataset
    from minimonkey_eval.datasets.workloads import write_workload
    from minimonkey_eval.eval.backends.reference import reference_preprocessor

    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"bench modes {list(modes)!r}: choose from {', '.join(MODES)}")
    modes = tuple(m for m in MODES if m in modes)     # the reference first: the others are compared to it
    max_new_tokens = max_new_tokens or workload.answer_tokens
    work_dir = Path(work_dir)
    data_root = work_dir / "LMUData"
    tsv = write_workload(workload, samples, data_root, seed=seed)
    groups = tsv_image_groups(tsv)
    images = unique_images(samples, workload)
    dataset = load_dataset(workload.dataset, data_root=data_root)
    for i in range(len(dataset.data)):          # untimed: every mode reads the same image files
        dataset.dump_image(dataset.data.iloc[i])
    tiling = workload_tiling(workload, tiles)
    preprocessor = reference_preprocessor(tiling)   # imports vlmeval now, not inside the timed reference run
    common = dict(workload=workload, data_root=data_root, work_dir=work_dir / "runs", tiles=tiles,
                  max_new_tokens=max_new_tokens, batch_size=batch_size, threads=threads, scm=scm, progress=progress)
    device_name = device_description(engine)
    rows, results = [], {}
    for mode in modes:
        fast = mode != "reference"
        engine.normalize_on_device = normalize_on_device and fast
        try:
            if warmup > 0:
                run_mode(engine, mode, limit=warmup, run_name=f"warmup-{mode}", **common)
            answers, profile, peak, runner, records = run_mode(engine, mode, **common)
        finally:
            engine.normalize_on_device = False
        attn = engine.model.config.text_config._attn_implementation if fast else "eager"
        rows.append(summarize(mode, profile, peak, engine, runner.backend.batch_size if fast else 1,
                              runner.backend.stage_threads if fast else 0, attn, answers, results.get("reference"),
                              device_name, counts=reuse_counts(records, groups), images=images))
        results[mode] = answers
    add_speedups(rows)
    keys = sorted(results[modes[0]], key=lambda k: int(k) if str(k).isdigit() else str(k))
    return {
        "workload": workload.name, "dataset": workload.dataset,
        "tiling": {"kind": tiling.kind, "min_num": tiling.min_num, "max_num": tiling.max_num,
                   "min_num2": tiling.min_num2, "max_num2": tiling.max_num2},
        "modes": list(modes), "max_new_tokens": max_new_tokens, "answer_tokens": workload.answer_tokens,
        "questions_per_image": workload.questions_per_image, "unique_images": images,
        "scm": scm is not None, "warmup": warmup, "samples_requested": samples,
        "device": device_name, "dtype": str(engine.dtype).replace("torch.", ""), "model_path": engine.path,
        "reference_preprocess": preprocessor, "rows": rows,
        "answers": {k: {mode: results[mode].get(k) for mode in modes} for k in keys},
        "host": {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
                 "load_average": _load_average()},
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


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
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return csv_path, json_path
