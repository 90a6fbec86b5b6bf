"""``minimonkey-eval plan`` on the demo fixtures: per benchmark and in total, samples, unique images, tokens and ViT
tiles with and without reuse, and the time estimate; its counts against what ``run`` actually asks the engine."""
from __future__ import annotations

import base64
import io
import json

import pytest
from helpers.reuse_data import DATASET, ONE_TILE, write_shared_tsv

from minimonkey_eval.cli import main
from minimonkey_eval.eval import bench
from minimonkey_eval.eval.plan import base64_image_size, plan_datasets, plan_rows, shared_prefill_flops

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FIXTURES = ("MME", "OCRBench", "MMBench_DEV_EN", "MMMU_DEV_VAL", "HallusionBench")


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory):
    from minimonkey_eval.datasets.fixtures import write_sample_tsvs

    root = tmp_path_factory.mktemp("LMUData")
    write_sample_tsvs(root, datasets=list(FIXTURES))
    return root


def test_plan_prints_every_benchmark_and_the_total(tiny_checkpoint, lmudata, capsys):
    assert main(["plan", "--model-path", str(tiny_checkpoint), "--data", ",".join(FIXTURES) + ",POPE",
                 "--data-root", str(lmudata), "--tflops", "0.001"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for header in ("samples", "images", "visual tok", "prefill tok", "prefill tok reuse", "ViT tiles",
                   "ViT tiles reuse", "est. s", "est. s reuse"):
        assert header in lines[0], header
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in lines[2:] if "|" in line}
    assert set(FIXTURES) | {"total", "POPE"} <= set(rows)
    assert "POPE: no " in out                     # a missing TSV is named, not fatal
    assert "0.001 TFLOP/s" in out and "2*N*H*d*L^2" in out   # the formula is said
    mme = rows["MME"]
    assert mme[1] == "16" and mme[2] == "8" and mme[3] == "2.00"   # 8 images x a yes and a no question


def test_plan_counts_what_run_asks(tiny_checkpoint, engine, tmp_path):
    """On a TSV of 2 images x 4 questions: the plan's visual and prompt tokens and tiles equal the engine's prompt
    tokens and tiles in a real run; with reuse its ViT tiles equal the run's, its prefill is the upper bound the
    run reaches or beats (questions may share words after the image too)."""
    from minimonkey_eval.eval.launch import run
    from minimonkey_eval.eval.run.options import RunOptions

    root = tmp_path / "LMUData"
    write_shared_tsv(root, images=2, per_image=4)
    plan = plan_datasets(tiny_checkpoint, [DATASET], root, tiles=ONE_TILE)
    (p,) = plan.datasets
    assert (p.samples, p.unique_images, p.vit_tiles, p.vit_tiles_reuse) == (8, 2, 8, 2)
    assert p.visual_tokens == 8 * 256 and p.prefill_tokens_reuse < p.prefill_tokens
    result = run(RunOptions(model="MiniMonkey", datasets=[DATASET], model_path=str(tiny_checkpoint),
                            data_root=str(root), work_dir=str(tmp_path / "r"), tiles=ONE_TILE, max_new_tokens=2,
                            batch_size="auto", progress=False), engine=engine)
    saved = json.loads((result.run_dir / "run.json").read_text())["results"][DATASET]["reuse"]
    assert saved["prompt_tokens"] == p.prefill_tokens and saved["tiles"] == p.vit_tiles
    assert saved["vit_tiles"] == p.vit_tiles_reuse
    assert saved["prefill_tokens"] <= p.prefill_tokens_reuse
    assert plan.total.samples == 8
    (row, total) = plan_rows(plan)
    assert row["speedup"] > 1 and total["questions_per_image"] == 4.0
    assert row["time_s"] == pytest.approx(p.flops / (plan.tflops * 1e12))


def test_flops_of_a_shared_prefix(engine):
    text = engine.model.model.language_model.config
    assert shared_prefill_flops(text, 100, [20]) == pytest.approx(bench.llm_prefill_flops(text, [120]))
    alone = bench.llm_prefill_flops(text, [120, 130, 110])
    shared = shared_prefill_flops(text, 100, [20, 30, 10])
    assert shared < alone
    # what sharing saves: the prefix's own work (linear + attention), done once instead of once per suffix
    prefix_alone = bench.llm_prefill_flops(text, [100]) - bench.llm_prefill_flops(text, [0])
    assert alone - shared == pytest.approx(2 * prefix_alone)


def test_image_size_from_the_base64_head():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1700, 2300), (200, 10, 10)).save(buf, format="JPEG", quality=90)
    payload = base64.b64encode(buf.getvalue()).decode("ascii")
    assert base64_image_size(payload) == (1700, 2300)
    with pytest.raises(ValueError):
        base64_image_size("bm90IGFuIGltYWdl")


def test_plan_options_are_checked(tiny_checkpoint, tmp_path, capsys):
    assert main(["plan", "--model-path", str(tiny_checkpoint), "--data-root", str(tmp_path / "none")]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["plan", "--model-path", str(tiny_checkpoint), "--data", "MME", "--data-root", str(tmp_path)]) == 2
    assert "no samples" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plan", "--model-path", str(tiny_checkpoint), "--tflops", "0"])
