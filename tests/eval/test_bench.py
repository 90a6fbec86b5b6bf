"""``minimonkey-eval bench`` on CPU with the tiny checkpoint: it runs ``run``'s own path (the runner and its
pipeline) in its three modes (reference, fast-no-reuse, fast), prints every column, writes CSV + JSON with the reuse
counters, and answers what ``run`` answers on the same samples; the workloads' questions per image; the profile's
counts, FLOP counts and the peak table. No timings are asserted."""
from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
import torch

from minimonkey_eval.cli import bench as bench_cli
from minimonkey_eval.cli import build_parser
from minimonkey_eval.cli.args import CliError
from minimonkey_eval.datasets import workloads
from minimonkey_eval.eval import bench
from minimonkey_eval.models.profile import Profile

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TILES = "1-2/1-2"

# `tiny_checkpoint` and `engine` (fp32, CPU, session-wide) come from tests/conftest.py.


def _parse(argv):
    return build_parser().parse_args(argv)   # the real command line (global -q / -v / --no-progress included)


def test_cmd_bench_runs_on_cpu_and_writes_csv_json(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINIMONKEY_NO_PROGRESS", "1")
    out = tmp_path / "bench"
    args = _parse(["bench", "--model-path", str(tiny_checkpoint), "--workload", "mme,ocrbench", "--samples", "2,1",
                   "--max-new-tokens", "4", "--tiles", TILES, "--warmup", "0", "--out", str(out)])
    assert args.handler is bench_cli.run and args.batch_size == "auto" and args.reuse
    from minimonkey_eval.models import Engine

    loads, real_load = [], Engine.from_pretrained

    def counting_load(*a, **k):
        loads.append(a)
        return real_load(*a, **k)

    monkeypatch.setattr(Engine, "from_pretrained", counting_load)
    assert bench_cli.run(args) == 0
    assert len(loads) == 1                          # one engine for both workloads
    ocr = json.loads(next(out.glob("bench_ocrbench_*.json")).read_text())
    assert ocr["workload"] == "ocrbench" and [r["samples"] for r in ocr["rows"]] == [1, 1, 1]
    for f in out.glob("bench_ocrbench_*"):
        f.unlink()
    printed = capsys.readouterr().out
    for _, header in bench.COLUMNS:
        assert header in printed, header
    lines = printed.splitlines()
    for mode in bench.MODES:
        assert any(line.strip().startswith(f"{mode} |") for line in lines), mode
    assert any(line.startswith("fast: ") and "x over fast-no-reuse" in line for line in lines)
    csv_files, json_files = list(out.glob("*.csv")), list(out.glob("*.json"))
    assert len(csv_files) == 1 and len(json_files) == 1
    with open(csv_files[0], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["mode"] for r in rows] == ["reference", "fast-no-reuse", "fast"]
    report = json.loads(json_files[0].read_text())
    assert report["workload"] == "mme" and len(report["answers"]) == 2 and len(report["rows"]) == 3
    assert report["modes"] == list(bench.MODES) and report["max_new_tokens"] == 4
    assert report["unique_images"] == 1 and report["questions_per_image"] == 2.0   # an MME pair: one image
    ref, plain, fast = report["rows"]
    assert ref["samples"] == fast["samples"] == plain["samples"] == 2 and ref["batch_size"] == 1
    assert fast["batch_size"] == plain["batch_size"] == "auto"
    assert ref["attn"] == "eager" and fast["attn"] == plain["attn"] == "sdpa"
    assert fast["peak_mem_gib"] is None and fast["prefill_mfu"] is None    # n/a on CPU
    assert fast["outputs_match"] == plain["outputs_match"] == "2/2" and ref["outputs_match"] == "-"
    assert ref["padding_waste"] == 0.0 and ref["batches"] == 2    # batch 1: one sample per batch, no padding
    assert all(ref[k] > 0 for k in ("staging_wait_s", "vision_s", "prefill_s", "decode_s", "wall_s"))
    # the reuse counters: one ViT pass for the pair's image, its prompt prefix prefilled once
    assert ref["vit_passes"] == plain["vit_passes"] == 2 and fast["vit_passes"] == fast["unique_images"] == 1
    assert ref["prompt_tokens"] == plain["prompt_tokens"] == fast["prompt_tokens"] == ref["prefill_tokens"]
    assert fast["prefill_tokens"] < fast["prompt_tokens"]
    assert abs(fast["prefill_tokens"] - fast["ideal_prefill_tokens"]) <= 0.1 * fast["ideal_prefill_tokens"]
    for row in report["rows"]:   # the speed-up over both other modes; None over itself
        for mode, key in bench.SPEEDUP_KEYS.items():
            assert (row[key] is None) == (mode == row["mode"]), (row["mode"], key)
    assert fast["speedup"] == fast["speedup_vs_reference"] and ref["speedup"] == 1.0
    assert fast["speedup_vs_fast_no_reuse"] == pytest.approx(1 / plain["speedup_vs_fast"])
    assert set(report["answers"]["0"]) == set(bench.MODES)
    assert "n/a" in printed


def test_no_reuse_benches_two_modes(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIMONKEY_NO_PROGRESS", "1")
    args = _parse(["bench", "--model-path", str(tiny_checkpoint), "--workload", "ocrbench", "--samples", "1",
                   "--tiles", TILES, "--warmup", "0", "--no-reuse", "--out", str(tmp_path)])
    assert args.max_new_tokens is None and not args.reuse
    assert bench_cli.run(args) == 0
    report = json.loads(next(tmp_path.glob("bench_ocrbench_*.json")).read_text())
    assert report["modes"] == ["reference", "fast-no-reuse"]
    assert report["max_new_tokens"] == report["answer_tokens"] == 8   # the workload's answer length


def test_bench_is_runs_path_and_answers_like_run(engine, tmp_path, monkeypatch):
    """The bench's fast mode goes through Runner.infer_dataset and the pipeline's bucketing; a plain ``run`` over
    the bench's TSV gives the same answers, and so does the reference mode."""
    from minimonkey_eval.eval.run import runner as runner_mod
    from minimonkey_eval.models import pipeline

    monkeypatch.setenv("MINIMONKEY_NO_PROGRESS", "1")
    calls = {"infer": [], "plan": []}
    infer, plan = runner_mod.Runner.infer_dataset, pipeline.plan_batches

    def spy_infer(self, dataset, profile=None):
        calls["infer"].append((self.opts.reference, profile is not None))
        return infer(self, dataset, profile)

    def spy_plan(lengths, batch_size, bucket=True, groups=None, group_size=None):
        calls["plan"].append((len(lengths), bucket))
        return plan(lengths, batch_size, bucket, groups, group_size=group_size)

    monkeypatch.setattr(runner_mod.Runner, "infer_dataset", spy_infer)
    monkeypatch.setattr(pipeline, "plan_batches", spy_plan)
    workload = workloads.WORKLOADS["ocrbench"]
    report = bench.run_bench(engine, workload, 5, tmp_path / "b", tiles=TILES, max_new_tokens=6, batch_size=2,
                             warmup=0)
    assert calls["infer"] == [(True, True), (False, True), (False, True)]
    assert (5, True) in calls["plan"] and (1, False) in calls["plan"]
    fast = {k: v["fast"] for k, v in report["answers"].items()}
    assert {k: v["reference"] for k, v in report["answers"].items()} == fast
    assert {k: v["fast-no-reuse"] for k, v in report["answers"].items()} == fast
    for row in report["rows"][1:]:
        assert row["batches"] == 3 and row["outputs_match"] == "5/5"
        assert row["vit_passes"] == row["unique_images"] == 5       # one question per image: nothing to share
        assert row["prefill_tokens"] == row["prompt_tokens"] == row["ideal_prefill_tokens"]

    from minimonkey_eval.eval.launch import run

    result = run(runner_mod.RunOptions(
        model="MiniMonkey", datasets=[workload.dataset], model_path=engine.path,
        data_root=str(tmp_path / "b" / "LMUData"), work_dir=str(tmp_path / "results"), tiles=TILES, max_new_tokens=6,
        batch_size=1, prefetch=False), engine=engine)
    samples = pd.read_csv(result.run_dir / f"{workload.dataset}_samples.csv", keep_default_na=False)
    assert {str(i): str(p) for i, p in zip(samples["index"], samples["prediction"])} == fast
    assert len(set(fast.values())) > 1   # the answers depend on the input


def test_bad_options_are_one_line_errors(tiny_checkpoint, tmp_path):
    common = ["bench", "--model-path", str(tiny_checkpoint), "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        _parse(common + ["--samples", "0"])
    with pytest.raises(SystemExit):
        _parse(common + ["--workload", "docvqa,nosuch"])
    with pytest.raises(CliError, match="3 counts for 2 workloads"):
        bench_cli.run(_parse(common + ["--workload", "mme,ocrbench", "--samples", "1,2,3"]))
    with pytest.raises(CliError, match="MSAC"):
        bench_cli.run(_parse(common + ["--tiles", "1-6"]))
    with pytest.raises(SystemExit):
        _parse(["bench", "--model-path", str(tiny_checkpoint), "--batch-size", "zero"])
    with pytest.raises(SystemExit):   # --model-path or --real-shapes is required
        _parse(["bench"])


def test_profile_counts_tokens_and_padding(engine, tmp_path):
    """The profile's counts against numbers computed here from the inputs and the engine's own token rows."""
    from minimonkey_eval.models import Tiling

    images = [workloads.make_image("crop", size, __import__("random").Random(k))
              for k, size in enumerate([(300, 100), (700, 150), (450, 120)])]
    prepared = [engine.prepare([im], "what is written in the image?", Tiling.msac(1, 2, 1, 2)) for im in images]
    profile = Profile()
    engine.generate_prepared(prepared, max_new_tokens=5, profile=profile)
    lengths = [len(p.input_ids) for p in prepared]
    assert profile.samples == 3 and profile.batches == 1
    assert profile.tiles == sum(p.pixel_values.shape[0] for p in prepared)
    assert profile.prompt_tokens == sum(lengths) and profile.padded_tokens == 3 * max(lengths)
    assert profile.padding_waste == pytest.approx((3 * max(lengths) - sum(lengths)) / (3 * max(lengths)))
    assert 3 <= profile.generated_tokens <= 15 and profile.decode_tokens == profile.generated_tokens - 3
    assert profile.vision_s > 0 and profile.prefill_s > 0 and profile.decode_s >= 0


@pytest.mark.parametrize("name", sorted(workloads.WORKLOADS))
def test_workloads_mirror_the_datasets(name, tmp_path):
    import base64
    import io

    from PIL import Image

    from minimonkey_eval.datasets.image_groups import tsv_image_groups

    workload = workloads.WORKLOADS[name]
    expected, per_image, answer = {"docvqa": ((14, 23, 5, 15), 4.2, 8), "infovqa": ((15, 23, 3, 5), 5.6, 8),
                                   "ocrbench": ((9, 24, 5, 8), 1.0, 8), "pope": ((9, 24, 5, 8), 10.3, 2),
                                   "mme": ((5, 11, 2, 6), 2.0, 2)}[name]
    assert (workload.questions_per_image, workload.answer_tokens) == (per_image, answer)
    tiling = workloads.workload_tiling(workload)
    assert (tiling.kind, tiling.min_num, tiling.max_num, tiling.min_num2, tiling.max_num2) == ("msac", *expected)
    sizes = workloads.group_sizes(1000, per_image)
    full = sizes[:-1]     # the last image gets what is left
    assert sum(sizes) == 1000 and abs(sum(full) / len(full) - per_image) < 0.01
    assert len(set(sizes[:-1])) <= 2 and max(sizes) - min(sizes[:-1]) <= 1   # 4.2: pages of 4 and 5 questions
    n = 12
    path = workloads.write_workload(workload, n, tmp_path, seed=3)
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    assert path.name == f"{workload.dataset}.tsv" and list(table["index"]) == [str(i) for i in range(n)]
    # the first row of an image carries it, the others refer to it by index (VLMEvalKit's image reference)
    groups = tsv_image_groups(path)
    assert len(set(groups.values())) == workloads.unique_images(n, workload) == len(workloads.group_sizes(n, per_image))
    for i, cell in enumerate(table["image"]):
        first = int(groups[str(i)].split(":")[1])
        assert (cell == str(first)) == (i != first) and (len(cell) > 64) == (i == first)
        members = [q for j, q in enumerate(table["question"]) if groups[str(j)] == groups[str(i)]]
        assert len(set(members)) == min(len(members), len(workload.questions))   # different questions per image
    with Image.open(io.BytesIO(base64.b64decode(table["image"][0]))) as image:
        assert image.format == "JPEG"
        assert workload.width[0] <= image.size[0] <= workload.width[1]
        assert workload.height[0] <= image.size[1] <= workload.height[1]
    assert set(table["question"]) <= set(workload.questions)
    again = pd.read_csv(workloads.write_workload(workload, n, tmp_path / "again", seed=3), sep="\t", dtype=str,
                        keep_default_na=False)
    assert again.equals(table)   # deterministic


def test_flop_counts_match_parameter_counts(engine):
    cfg = engine.model.config
    lm = engine.model.model.language_model
    linear = sum(m.weight.numel() for m in lm.layers.modules() if isinstance(m, torch.nn.Linear))
    lm_head = engine.model.lm_head.weight.numel()
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
    row.update(mode="fast", prefill_mfu=0.4321, padding_waste=0.125, speedup_vs_reference=3.0,
               speedup_vs_fast_no_reuse=2.5, samples=2, vit_passes=1, unique_images=1, prefill_tokens=900,
               prompt_tokens=2000)
    table = bench.format_table([row])
    assert "43.2%" in table and "12.5%" in table and "3.00x" in table and "2.50x" in table and "n/a" in table
    assert all(header in table for _, header in bench.COLUMNS)
    assert table.splitlines()[2].split("|")[-1].strip() == "-"   # no speed-up over itself
    markdown = bench.format_markdown([{"workload": "docvqa", "rows": [row]}])
    assert markdown.splitlines()[2].startswith("| docvqa | fast | 2 | 1 |") and "| 3.00x |" in markdown
