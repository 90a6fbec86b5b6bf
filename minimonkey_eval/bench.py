"""Throughput benchmark of ``run``'s own path: the batched, overlapped fast mode vs the VLMEvalKit-style reference.

``minimonkey-eval bench [--model-path DIR | --real-shapes] --workload docvqa|ocrbench|mme --samples N`` writes a
synthetic VLMEvalKit-shaped TSV of the workload (``workloads.py``: image sizes and MSAC tiles like the real set),
then runs it through the runner (``eval.runner.Runner``: prompts, staging, batching, backoff, prediction store;
scoring skipped) twice, in one process, on one loaded engine:

* ``fast``: what ``run`` does: staging threads overlapped with the device, length-bucketed batches
  (``--batch-size``, default ``auto``), SDPA;
* ``reference``: VLMEvalKit's way (``RunOptions.reference``): batch 1, one sample at a time in dataset order, no
  overlap, VLMEvalKit's own ``load_image``/``load_image2`` tiles, eager attention.

Per mode (also written as CSV + JSON under ``--out``): ``samples/s`` (over the inference wall time), prompt and
generated tokens/s (over the same wall time), the time split from ``models.profile.Profile`` (``staging wait``: the
device-feeding thread waiting for prompts/tiles/tokens; ``vision``; ``prefill`` up to the first token;
``decode``), ``padding`` waste ((padded - real) / padded prompt tokens), peak device memory
(``torch.cuda.max_memory_allocated``; n/a on CPU), prefill MFU on CUDA (useful FLOPs of ViT + projector + LLM
prefill over vision + prefill time against the GPU's dense bf16 peak, :data:`PEAK_BF16_TFLOPS`; n/a on CPU or fp32),
``outputs match`` (greedy answers equal to the reference's, per sample) and the ``speed-up`` (fast samples/s over
reference samples/s). Images are dumped from the TSV once before timing (both modes read the same files); each
mode first answers ``--warmup`` untimed samples.
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
import tempfile
import time
from pathlib import Path

from .errors import UserFacingError
from .models.settings import ScmConfig
from .workloads import WORKLOADS, Workload, workload_tiling

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
    ("mode", "mode"), ("samples", "samples"), ("batch_size", "batch"), ("threads", "threads"), ("attn", "attn"),
    ("wall_s", "wall s"), ("samples_per_s", "samples/s"), ("prompt_tok_s", "prompt tok/s"),
    ("generated_tok_s", "gen tok/s"), ("staging_wait_s", "staging wait s"), ("vision_s", "vision s"),
    ("prefill_s", "prefill s"), ("decode_s", "decode s"), ("padding_waste", "padding"),
    ("peak_mem_gib", "peak mem GiB"), ("prefill_mfu", "prefill MFU"), ("outputs_match", "outputs match"),
    ("speedup", "speed-up"),
)


class BenchError(UserFacingError):
    """A bad benchmark option."""


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
             limit: int | None = None,
             run_name: str | None = None):
    """One mode through ``Runner.run`` (scoring skipped): ``(answers by index, Profile, peak bytes | None)``."""
    import torch

    from .eval.predictions import PredictionStore
    from .eval.runner import Runner, RunOptions
    from .models.profile import Profile
    from .models.registry import PAIR_NEW

    reference = mode == "reference"
    opts = RunOptions(model=PAIR_NEW, datasets=[workload.dataset], model_path=engine.path,
                      data_root=str(data_root), work_dir=str(work_dir), run_name=run_name or mode, tiles=tiles,
                      max_new_tokens=max_new_tokens, batch_size=1 if reference else batch_size, scm=scm,
                      limit=limit, stage_threads=threads, score=False, reference=reference, overwrite=True)
    profile = Profile.for_device(engine.device)
    cuda = engine.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(engine.device)
        torch.cuda.reset_peak_memory_stats(engine.device)
    runner = Runner(opts, engine=engine)
    result = runner.run(profile)
    peak = int(torch.cuda.max_memory_allocated(engine.device)) if cuda else None
    records = PredictionStore(result.run_dir, workload.dataset).load()
    answers = {key: (None if r.get("failed") else r["prediction"]) for key, r in records.items()}
    return answers, profile, peak, runner


def summarize(mode: str, profile, peak: int | None, engine, batch_size, threads, attn: str,
              answers: dict, reference: dict | None, reference_rate: float | None, device_name: str) -> dict:
    """One table row (raw numbers; formatting happens when printing)."""
    t = profile
    peak_flops = peak_bf16_flops(device_name) if engine.device.type == "cuda" else None
    mfu = None
    if peak_flops and str(engine.dtype).endswith(("bfloat16", "float16")) and (t.vision_s + t.prefill_s) > 0:
        flops = vision_flops(engine.model.config, t.tiles) + llm_prefill_flops(engine.model.config.text_config,
                                                                               t.seq_lens)
        mfu = flops / ((t.vision_s + t.prefill_s) * peak_flops)
    rate = _rate(t.samples, t.wall_s)
    row = {
        "mode": mode, "samples": t.samples, "batch_size": batch_size, "threads": threads, "attn": attn,
        "wall_s": t.wall_s, "samples_per_s": rate, "prompt_tok_s": _rate(t.prompt_tokens, t.wall_s),
        "generated_tok_s": _rate(t.generated_tokens, t.wall_s), "staging_wait_s": t.staging_wait_s,
        "vision_s": t.vision_s, "prefill_s": t.prefill_s, "decode_s": t.decode_s, "padding_waste": t.padding_waste,
        "peak_mem_gib": None if peak is None else peak / 2 ** 30, "prefill_mfu": mfu,
        "outputs_match": "-", "speedup": None,
        "tiles": t.tiles, "prompt_tokens": t.prompt_tokens, "padded_tokens": t.padded_tokens,
        "generated_tokens": t.generated_tokens, "batches": t.batches, "failed_batches": t.failed_batches,
    }
    if reference is not None:
        same = sum(answers.get(k) is not None and answers.get(k) == v for k, v in reference.items())
        row["outputs_match"] = f"{same}/{len(reference)}"
        row["speedup"] = rate / reference_rate if rate and reference_rate else None
    else:
        row["speedup"] = 1.0
    return row


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


def format_table(rows: list[dict]) -> str:
    cells = [[header for _, header in COLUMNS]]
    for row in rows:
        out = []
        for key, _ in COLUMNS:
            value = row.get(key)
            if key in ("prefill_mfu", "padding_waste") and value is not None:
                out.append(f"{100 * value:.1f}%")
            elif key == "speedup" and value is not None:
                out.append(f"{value:.2f}x")
            elif key in ("prompt_tok_s", "generated_tok_s", "samples_per_s"):
                out.append(_fmt(value, 1 if key != "samples_per_s" else 3))
            else:
                out.append(_fmt(value))
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
              max_new_tokens: int = 64, batch_size="auto", threads: int | None = None, warmup: int = 1,
              scm: ScmConfig | None = None, seed: int = 0, normalize_on_device: bool = False) -> dict:
    """Write the workload, run the reference and fast modes through the runner; returns the report."""
    from .datasets.local import load_dataset
    from .reference import reference_preprocessor
    from .workloads import write_workload

    work_dir = Path(work_dir)
    data_root = work_dir / "LMUData"
    write_workload(workload, samples, data_root, seed=seed)
    dataset = load_dataset(workload.dataset, data_root=data_root)
    for i in range(len(dataset.data)):          # untimed: both modes read the same image files
        dataset.dump_image(dataset.data.iloc[i])
    tiling = workload_tiling(workload, tiles)
    preprocessor = reference_preprocessor(tiling)   # imports vlmeval now, not inside the timed reference run
    common = dict(workload=workload, data_root=data_root, work_dir=work_dir / "runs", tiles=tiles,
                  max_new_tokens=max_new_tokens, batch_size=batch_size, threads=threads, scm=scm)
    device_name = device_description(engine)
    rows, results = [], {}
    for mode in ("reference", "fast"):
        engine.normalize_on_device = normalize_on_device and mode == "fast"
        try:
            if warmup > 0:
                run_mode(engine, mode, limit=warmup, run_name=f"warmup-{mode}", **common)
            answers, profile, peak, runner = run_mode(engine, mode, **common)
        finally:
            engine.normalize_on_device = False
        reference = results.get("reference")
        attn = "eager" if mode == "reference" else engine.model.config.text_config._attn_implementation
        rows.append(summarize(mode, profile, peak, engine, runner.batch_size if mode == "fast" else 1,
                              runner.stage_threads if mode == "fast" else 0, attn, answers,
                              reference[0] if reference else None, reference[1] if reference else None,
                              device_name))
        results[mode] = (answers, rows[-1]["samples_per_s"])
    keys = sorted(results["reference"][0], key=lambda k: int(k) if str(k).isdigit() else str(k))
    return {
        "workload": workload.name, "dataset": workload.dataset,
        "tiling": {"kind": tiling.kind, "min_num": tiling.min_num, "max_num": tiling.max_num,
                   "min_num2": tiling.min_num2, "max_num2": tiling.max_num2},
        "max_new_tokens": max_new_tokens, "scm": scm is not None, "warmup": warmup, "samples_requested": samples,
        "device": device_name, "dtype": str(engine.dtype).replace("torch.", ""), "model_path": engine.path,
        "reference_preprocess": preprocessor, "rows": rows,
        "answers": {k: {"reference": results["reference"][0].get(k), "fast": results["fast"][0].get(k)} for k in keys},
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
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return csv_path, json_path


# ---------------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------------
def workload_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in WORKLOADS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(sorted(WORKLOADS))} (comma-separated)")
    return names


def samples_list(text: str) -> list[int]:
    try:
        counts = [int(n) for n in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number, or one number per workload (comma-separated)") from None
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be >= 1")
    return counts


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` on a ``subparsers`` object (from ``ArgumentParser.add_subparsers``); imports no torch."""
    from .cli import batch_size_arg
    from .models.registry import PAIR_BASE, get_model

    p = subparsers.add_parser("bench", help="throughput of run's path: fast mode vs the VLMEvalKit-style reference",
                              description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-path", type=Path, help="original-format checkpoint directory")
    src.add_argument("--real-shapes", action="store_true",
                     help=f"write a {get_model(PAIR_BASE).label}-sized random bf16 checkpoint (~4.4 GB) to a temp dir "
                          "and use it")
    p.add_argument("--workload", default="docvqa", type=workload_list,
                   help=f"one workload or a comma-separated list, run one after the other on one loaded engine "
                        f"({', '.join(sorted(WORKLOADS))}; default docvqa)")
    p.add_argument("--samples", type=samples_list, default=[32],
                   help="synthetic samples per workload: one number for all, or one per --workload (default 32)")
    p.add_argument("--batch-size", type=batch_size_arg, default="auto", help="fast-mode batch size, N or 'auto'")
    p.add_argument("--stage-threads", type=int, default=None,
                   help="fast-mode staging threads (default: cores - 1, at most 8)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--tiles", default=None, help="override the workload's MSAC tiles, 'MIN-MAX/MIN2-MAX2'")
    p.add_argument("--warmup", type=int, default=1, help="untimed samples per mode before timing (default 1)")
    p.add_argument("--scm", action="store_true", help="enable SCM in both modes")
    p.add_argument("--seed", type=int, default=0)
    from .options import add_engine_options

    add_engine_options(p, attn_help="fast-path attention (the reference mode always runs eager)")
    p.add_argument("--normalize-on-device", action="store_true",
                   help="fast mode: uint8 tiles normalised on the device (the reference mode is unaffected)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where CSV + JSON go (default {DEFAULT_OUT}/)")
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args) -> int:
    """``minimonkey-eval bench``: per workload, prints the table and writes CSV + JSON to ``--out``; the engine is
    loaded once for all the workloads."""
    workloads_ = args.workload if isinstance(args.workload, list) else [args.workload]
    counts = args.samples if isinstance(args.samples, list) else [args.samples]
    if len(counts) == 1:
        counts = counts * len(workloads_)
    if len(counts) != len(workloads_):
        raise BenchError(f"--samples: {len(counts)} counts for {len(workloads_)} workloads; give one, or one each")
    if min(counts) < 1:
        raise BenchError(f"--samples must be >= 1, got {min(counts)}")
    if args.max_new_tokens < 1:
        raise BenchError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.stage_threads is not None and args.stage_threads < 1:
        raise BenchError(f"--stage-threads must be >= 1, got {args.stage_threads}")
    for name in workloads_:
        try:
            workload_tiling(WORKLOADS[name], args.tiles)
        except ValueError as exc:
            raise BenchError(f"--tiles: {exc}") from None
    from .models import Engine, ScmConfig

    with contextlib.ExitStack() as stack:
        model_path = args.model_path
        if model_path is None:
            from .models.tiny_checkpoint import write_checkpoint

            model_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mm-bench-ckpt-")))
            print(f"writing a real-shape random checkpoint (~4.4 GB) to {model_path} ...", flush=True)
            write_checkpoint(model_path, real_shapes=True, seed=args.seed)
        engine = Engine.from_pretrained(model_path, dtype=args.dtype, device=args.device,
                                        attn_implementation=args.attn)
        for name, samples in zip(workloads_, counts):
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mm-bench-"))
            report = run_bench(engine, WORKLOADS[name], samples, work_dir, tiles=args.tiles,
                               max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                               threads=args.stage_threads, warmup=args.warmup, scm=ScmConfig() if args.scm else None,
                               seed=args.seed,
                               normalize_on_device=args.normalize_on_device)
            report["real_shapes"] = bool(args.real_shapes and args.model_path is None)
            _print_report(report, samples, args.max_new_tokens, args.out)
    return 0


def _print_report(report: dict, samples: int, max_new_tokens: int, out: Path) -> None:
    t = report["tiling"]
    print(f"workload {report['workload']} ({report['dataset']}-like, tiles {t['min_num']}-{t['max_num']}/"
          f"{t['min_num2']}-{t['max_num2']}), {samples} samples, max_new_tokens {max_new_tokens}, "
          f"device {report['device']}, dtype {report['dtype']}")
    print(f"reference preprocessing: {report['reference_preprocess']}")
    print(format_table(report["rows"]))
    fast = report["rows"][-1]
    print(f"speed-up (fast / reference samples/s): {_fmt(fast['speedup'])}x; outputs equal to the reference: "
          f"{fast['outputs_match']}")
    csv_path, json_path = write_report(report, out)
    print(f"wrote {csv_path} and {json_path}")
