"""``minimonkey-eval bench`` on CPU with the tiny checkpoint: runs, prints every column, writes CSV + JSON; the
instrumented batch runner answers like ``Engine.generate_prepared``; FLOP counts and the peak table. No timings
are asserted."""
from __future__ import annotations

import argparse
import csv
import json

import pytest
import torch

from minimonkey_eval import bench
from minimonkey_eval.models import Tiling


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# `tiny_checkpoint` and `engine` (fp32, CPU, session-wide) come from tests/conftest.py.


def _parse(argv):
    parser = argparse.ArgumentParser(prog="minimonkey-eval")
    sub = parser.add_subparsers(dest="command", required=True)
    bench.add_bench_parser(sub)
    return parser.parse_args(argv)


def test_cmd_bench_runs_on_cpu_and_writes_csv_json(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bench"
    args = _parse(["bench", "--model-path", str(tiny_checkpoint), "--workload", "mme", "--samples", "2",
                   "--max-new-tokens", "4", "--tiles", "1-2/1-2", "--warmup", "0", "--num-workers", "1",
                   "--batch-size", "auto", "--out", str(out)])
    assert args.func is bench.cmd_bench
    assert bench.cmd_bench(args) == 0
    printed = capsys.readouterr().out
    for _, header in bench.COLUMNS:
        assert header in printed, header
    lines = printed.splitlines()
    assert any(line.strip().startswith("reference |") for line in lines)
    assert any(line.strip().startswith("fast |") for line in lines)
    csv_files, json_files = list(out.glob("*.csv")), list(out.glob("*.json"))
    assert len(csv_files) == 1 and len(json_files) == 1
    with open(csv_files[0], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["mode"] for r in rows] == ["reference", "fast"]
    assert all(key in rows[0] for key, _ in bench.COLUMNS)
    report = json.loads(json_files[0].read_text())
    assert report["workload"] == "mme" and len(report["samples"]) == 2 and len(report["rows"]) == 2
    fast = report["rows"][1]
    assert fast["samples"] == 2 and fast["batch_size"] == 4   # 'auto' on CPU
    assert fast["peak_mem_gib"] is None and fast["prefill_mfu"] is None    # n/a on CPU
    assert fast["outputs_match"] == "2/2"
    assert all(report["rows"][0][k] >= 0 for k in ("prep_s", "vision_s", "prefill_s", "decode_s", "wall_s"))
    assert "n/a" in printed


def test_cmd_bench_rejects_bad_options(tiny_checkpoint, tmp_path):
    common = ["bench", "--model-path", str(tiny_checkpoint), "--out", str(tmp_path)]
    with pytest.raises(bench.BenchError):
        bench.cmd_bench(_parse(common + ["--samples", "0"]))
    with pytest.raises(bench.BenchError):
        bench.cmd_bench(_parse(common + ["--tiles", "1-6"]))
    with pytest.raises(SystemExit):
        _parse(["bench", "--model-path", str(tiny_checkpoint), "--batch-size", "zero"])
    with pytest.raises(SystemExit):   # --model-path or --real-shapes is required
        _parse(["bench"])


def test_instrumented_runner_answers_like_the_engine(engine, tmp_path):
    samples = bench.make_workload(bench.WORKLOADS["ocrbench"], 3, tmp_path, seed=1)
    tiling = Tiling.msac(1, 2, 1, 2)
    prepared = [engine.prepare([s.path], s.question, tiling) for s in samples]
    timer = bench.StageTimer(engine.device)
    timer.start()
    timed = timer.run_batch(engine, prepared, max_new_tokens=5)
    times = timer.stop()
    assert timed == engine.generate_prepared(prepared, max_new_tokens=5)
    assert "generate" not in vars(engine.model)  # the streamer is detached again
    assert times.samples == 3 and times.batches == 1 and times.tiles == sum(p.num_tiles for p in prepared)
    assert times.prompt_tokens == sum(len(p.input_ids) for p in prepared)
    assert 3 <= times.generated_tokens <= 15 and times.decode_tokens == times.generated_tokens - 3


@pytest.mark.parametrize("name", sorted(bench.WORKLOADS))
def test_workloads_mirror_the_datasets(name, tmp_path):
    workload = bench.WORKLOADS[name]
    expected = {"docvqa": (14, 23, 5, 15), "ocrbench": (9, 24, 5, 8), "mme": (5, 11, 2, 6)}[name]
    tiling = bench.workload_tiling(workload)
    assert (tiling.kind, tiling.min_num, tiling.max_num, tiling.min_num2, tiling.max_num2) == ("msac", *expected)
    (sample,) = bench.make_workload(workload, 1, tmp_path, seed=3)
    from PIL import Image

    with Image.open(sample.path) as image:
        assert image.size == sample.size and image.format == "JPEG"
    assert workload.width[0] <= sample.size[0] <= workload.width[1]
    assert workload.height[0] <= sample.size[1] <= workload.height[1]
    assert sample.question.endswith("Answer the question using a single word or phrase.")
    again = bench.make_workload(workload, 1, tmp_path / "again", seed=3)[0]
    assert again.size == sample.size and again.question == sample.question   # deterministic


def test_flop_counts_match_parameter_counts(engine):
    cfg = engine.model.config
    lm = engine.model.model.language_model
    linear = sum(m.weight.numel() for m in lm.layers.modules() if isinstance(m, torch.nn.Linear))
    lm_head = engine.model.lm_head.weight.numel()
    # one token: no attention term (L^2 * H * d with L=1 is counted once per layer)
    d = cfg.text_config.hidden_size // cfg.text_config.num_attention_heads
    one = bench.llm_prefill_flops(cfg.text_config, [1])
    assert one == 2 * linear + 2 * cfg.text_config.num_hidden_layers * cfg.text_config.num_attention_heads * d \
        + 2 * lm_head
    two = bench.llm_prefill_flops(cfg.text_config, [10, 20])
    assert two > bench.llm_prefill_flops(cfg.text_config, [30]) / 2
    vit = engine.model.model.vision_tower
    vit_linear = sum(m.weight.numel() for m in vit.encoder.modules() if isinstance(m, torch.nn.Linear))
    proj_linear = sum(m.weight.numel() for m in engine.model.model.multi_modal_projector.modules()
                      if isinstance(m, torch.nn.Linear))
    per_tile = bench.vision_flops(cfg, 1)
    assert per_tile > 2 * vit_linear * 1025 + 2 * proj_linear * 256
    assert bench.vision_flops(cfg, 3) == pytest.approx(3 * per_tile)


@pytest.mark.parametrize("device_name, tflops", [
    ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756), ("NVIDIA H100 NVL", 835), ("NVIDIA H200", 989),
    ("NVIDIA A100-SXM4-80GB", 312), ("Tesla T4", None)])
def test_peak_table(device_name, tflops):
    peak = bench.peak_bf16_flops(device_name)
    assert (peak is None) if tflops is None else peak == tflops * 1e12


def test_table_formatting_has_every_column():
    row = {key: None for key, _ in bench.COLUMNS}
    row.update(mode="fast", prefill_mfu=0.4321, speedup=3.0, samples=2)
    table = bench.format_table([row])
    assert "43.2%" in table and "3.00x" in table and "n/a" in table
    assert all(header in table for _, header in bench.COLUMNS)
