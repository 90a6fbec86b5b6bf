"""``minimonkey-eval sweep``: a 2x2 grid on the tiny fixtures writes the table, charts and pages; the visual-token
count per sample follows SCM's bookkeeping; a sweep killed after one point resumes without recomputing it."""
from __future__ import annotations

import json
import math
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from helpers.runner_utils import (
    FAST_TILES,
    cli,
    cli_args,
    cli_env,
    gated_env,
    part_lines,
    sample_root,
    signal_at_gate,
    warm_run,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATASET = "OCRBench"
ROWS = 3
TILES = f"{FAST_TILES},2-4/1-2"
RATIO = 0.25
TOKENS_PER_TILE = 256


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory):
    return sample_root(tmp_path_factory, DATASET, ROWS)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_checkpoint, engine, lmudata):
    from minimonkey_eval.eval.sweep.grid import sweep

    out = tmp_path_factory.mktemp("sweep")
    result = sweep("MiniMonkey", DATASET, TILES, f"off,{RATIO}", out=out, model_path=str(tiny_checkpoint),
                   data_root=str(lmudata), limit=ROWS, max_new_tokens=3, batch_size=1, engine=engine)
    return result


def test_sweep_writes_table_charts_and_pages(swept):
    out = swept.out
    assert len(swept.computed) == 4 and not swept.skipped
    df = pd.read_csv(out / "sweep.csv")
    assert sorted(zip(df["tiles"], df["scm"].astype(str))) == sorted(
        (t, s) for t in TILES.split(",") for s in ("off", str(RATIO)))
    assert (df["rows"] == ROWS).all() and (df["dataset"] == DATASET).all()
    for col in ("visual_tokens", "prompt_tokens", "generated_tokens", "samples_per_s", "latency_s", "peak_mem_gb"):
        assert (df[col] > 0).all(), col
    assert (df["generated_tokens"] <= 3).all()        # --max-new-tokens 3
    from minimonkey_eval.eval.report.published import published_reference

    assert (df["published"] == published_reference("MiniMonkey")[0]["OCRBench"]).all()
    assert not df["card_setting"].any()              # no vlmevalkit tiles in this grid
    for _, row in df.iterrows():                     # the significance module's CI, or why there is none
        if row["ci_note"].endswith("95%"):               # Wilson score / percentile bootstrap
            assert row["ci_lo"] <= row["headline"] <= row["ci_hi"] and row["ci_lo"] < row["ci_hi"]
        else:
            assert row["ci_note"].startswith("no CI") and math.isnan(row["ci_lo"])
    for run_name in df["run_name"]:
        meta = json.loads((out / run_name / "run.json").read_text())
        assert meta["results"][DATASET]["rows"] == ROWS   # each point is an ordinary run folder
    assert len(pd.read_excel(out / "sweep.xlsx")) == 4
    png = out / f"{DATASET}_pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"]({png.name})" in (out / "sweep.md").read_text()
    assert f"src='{png.name}'" in (out / "sweep.html").read_text()


def _expected_visual_tokens(image_path: str, tiles: str, ratio: float | None) -> int:
    """tiles x 256; SCM keeps int(high * ratio) of the first-scale block (high = grid1 area x 256) and, like the
    official code, also drops the token right after the block when that token is a visual one."""
    from minimonkey_eval.models.tiling import msac_tiling

    (min1, max1), (min2, max2) = (map(int, part.split("-")) for part in tiles.split("/"))
    tiled = msac_tiling(image_path, min1, max1, min2, max2)
    total = tiled.pixel_values.shape[0] * TOKENS_PER_TILE
    if ratio is None:
        return total
    high = tiled.grid[0] * tiled.grid[1] * TOKENS_PER_TILE
    return total - high + int(high * ratio) - (1 if total > high else 0)


def test_visual_tokens_drop_by_the_scm_ratio(swept):
    out = swept.out
    df = pd.read_csv(out / "sweep.csv")
    checked = 0
    for tiles in TILES.split(","):
        by_scm = {}
        for _, row in df[df["tiles"] == tiles].iterrows():
            ratio = None if str(row["scm"]) == "off" else float(row["scm"])
            records = [json.loads(line) for line in
                       (out / row["run_name"] / "predictions" / f"{DATASET}.jsonl").read_text().splitlines()]
            for r in records:
                assert r["visual_tokens"] == _expected_visual_tokens(r["image_path"], tiles, ratio)
                checked += 1
            by_scm[ratio] = {r["index"]: r for r in records}
            assert row["visual_tokens"] == pytest.approx(sum(r["visual_tokens"] for r in records) / len(records))
        off, scm = by_scm[None], by_scm[RATIO]
        for index, r in off.items():   # the text tokens are the same: the prompt shrinks by the visual tokens
            assert r["prompt_tokens"] - scm[index]["prompt_tokens"] == \
                r["visual_tokens"] - scm[index]["visual_tokens"] > 0
    assert checked == 4 * ROWS


def test_rerun_skips_every_finished_point(swept, tiny_checkpoint, lmudata):
    from minimonkey_eval.eval.sweep.grid import sweep

    before = (swept.out / "sweep.json").read_text()

    class NoEngine:   # any inference or engine load would touch it
        def __getattr__(self, name):
            raise AssertionError(f"engine used on a finished sweep ({name})")

    again = sweep("MiniMonkey", DATASET, TILES, f"off,{RATIO}", out=swept.out, model_path=str(tiny_checkpoint),
                  data_root=str(lmudata), limit=ROWS, max_new_tokens=3, batch_size=1, engine=NoEngine())
    assert again.computed == [] and sorted(again.skipped) == sorted(swept.computed)
    assert (swept.out / "sweep.json").read_text() == before


def test_nearest_point_and_card_setting(tmp_path):
    from minimonkey_eval.eval.sweep.grid import Point, card_setting
    from minimonkey_eval.eval.sweep.state import STATE, nearest_point

    rows = {f"r{i}": {"model": m, "dataset": d, "headline": h, "tiles": t, "scm": "off"}
            for i, (m, d, h, t) in enumerate([
                ("MiniMonkey", "OCRBench", 700.0, "a"), ("MiniMonkey", "OCRBench", 790.0, "b"),
                ("InternVL2-2B", "OCRBench", 801.0, "c"), ("MiniMonkey", "MME", 802.0, "d"),
                ("MiniMonkey", "OCRBench", None, "e")])}
    (tmp_path / STATE).write_text(json.dumps({"rows": rows}))
    assert nearest_point(tmp_path, "OCRBench", 802.0)["tiles"] == "c"
    assert nearest_point(tmp_path, "OCRBench", 802.0, model="MiniMonkey")["tiles"] == "b"
    assert nearest_point(tmp_path, "OCRBench", math.nan) is None
    assert nearest_point(tmp_path / "none", "OCRBench", 802.0) is None
    assert card_setting("MiniMonkey", Point("vlmevalkit", None))
    assert not card_setting("MiniMonkey", Point("vlmevalkit", 0.5))
    assert not card_setting("MiniMonkey", Point("monkey-repo", None))
    assert not card_setting("MiniMonkey", Point("4-12/3-7", None), "OCRBench")   # card: 9-24/5-8 there
    assert card_setting("MiniMonkey", Point("9-24/5-8", None), "OCRBench")
    assert card_setting("InternVL2-2B", Point("1-24", None), "OCRBench")        # the baseline curve's budgets
    assert not card_setting("InternVL2-2B", Point("1-6", None), "OCRBench")
    assert card_setting("InternVL2-2B", Point("1-6", None), "MME")


def test_bad_grid_is_one_line(tiny_checkpoint, tmp_path):
    proc = subprocess.run(cli("sweep", "--model", "MiniMonkey", "--model-path", tiny_checkpoint, "--data", DATASET,
                              "--scm", "off,1.5", "--out", tmp_path / "s"), env=cli_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: minimonkey-eval sweep: argument --scm: must be in (0, 1], got 1.5 (see minimonkey-eval sweep --help)"]


def _sweep_args(ckpt, lmudata, out):
    return cli_args("sweep", "--model", "MiniMonkey", "--model-path", ckpt, "--data", DATASET, "--data-root", lmudata,
               "--tiles", f"{FAST_TILES},1-1/1-1", "--scm", "off,0.5", "--limit", ROWS, "--max-new-tokens", 3,
               "--batch-size", 1, "--dtype", "fp32", "--device", "cpu", "--out", out)


@pytest.mark.slow
def test_killed_sweep_resumes_point_by_point(tmp_path, tiny_checkpoint, lmudata, warm_cli):
    out = tmp_path / "sweep"
    # the gate holds the process after the first record of the second point: the first point is scored and in
    # sweep.json, the second has one prediction on disk
    env, reached, _ = gated_env(tmp_path, ROWS + 1)
    killed = signal_at_gate(warm_cli, _sweep_args(tiny_checkpoint, lmudata, out), env, reached, tmp_path / "k.log")
    assert killed.returncode == -signal.SIGKILL, killed.output
    state = json.loads((out / "sweep.json").read_text())
    assert len(state["rows"]) == 1
    (first_key, first_row), = state["rows"].items()
    first_dir = out / first_row["run_name"]
    score_mtime = (first_dir / f"{DATASET}_score.csv").stat().st_mtime_ns
    assert len(part_lines(first_dir, DATASET)) == ROWS

    rerun = warm_run(warm_cli, _sweep_args(tiny_checkpoint, lmudata, out), tmp_path / "rerun.log")
    assert rerun.returncode == 0, rerun.output
    assert "3 point(s) computed, 1 already done" in rerun.output
    state = json.loads((out / "sweep.json").read_text())
    assert len(state["rows"]) == 4
    assert state["rows"][first_key] == first_row                  # not recomputed ...
    assert (first_dir / f"{DATASET}_score.csv").stat().st_mtime_ns == score_mtime   # ... nor rescored
    for row in state["rows"].values():                            # every sample inferred exactly once
        indices = [r["index"] for r in part_lines(out / row["run_name"], DATASET)]
        assert sorted(indices) == sorted(set(indices)) and len(indices) == ROWS
    assert len(pd.read_csv(out / "sweep.csv")) == 4


def test_report_names_the_nearest_sweep_point(swept, tmp_path):
    import shutil

    from minimonkey_eval.eval.report.build import build_report
    from minimonkey_eval.eval.sweep.state import STATE, label, read_state

    sweep_dir = Path(swept.out)
    work = tmp_path / "work"
    shutil.copytree(sweep_dir, work / "sw")
    rows = list(read_state(work / "sw")["rows"].values())
    run_dir = next(p.parent for p in (work / "sw").glob("*/run.json"))
    shutil.copytree(run_dir, work / run_dir.name)                 # one sweep point as an ordinary run of the report
    md = build_report(work).markdown.read_text()
    section = md[md.index("## Why doesn't it match?"):md.index("## Breakdowns")]
    line = next(x for x in section.splitlines() if "| OCRBench |" in x)
    best = min((r for r in rows if r.get("headline") is not None), key=lambda r: abs(r["headline"] - 802.0))
    assert f"{label(best)}: {best['headline']:.4g} (sw)" in line
    assert (work / "sw" / STATE).exists()
