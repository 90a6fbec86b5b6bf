"""``minimonkey-eval demo``: fixtures + tiny model + run-all for both models on all 16 datasets + report."""
from __future__ import annotations

import json
import re
import subprocess
import time

import pandas as pd
import pytest
from helpers.runner_utils import cli, cli_env

from minimonkey_eval.datasets.registry import DEFAULT_DATASETS, PAPER_COLUMNS
from minimonkey_eval.eval.report.build import DEMO_TAG
from minimonkey_eval.eval.report.published import all_published


@pytest.mark.slow
@pytest.mark.timeout(960)   # above its own 900 s subprocess limit (pyproject's default is 600 s)
def test_demo_all_datasets_both_models(tmp_path):
    out = tmp_path / "demo"
    t0 = time.monotonic()
    # progress bars on: stderr must hold our bars only (no vlmeval '.env' error, warnings or bars of its own)
    proc = subprocess.run(cli("demo", "--out", out), env=cli_env(MINIMONKEY_NO_PROGRESS="0"), capture_output=True,
                          text=True, timeout=900)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ours = re.compile(r"(MiniMonkey|InternVL2-2B)/[A-Za-z0-9_]+: +[0-9]+%\|")
    noise = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip() and not ours.match(line)]
    assert not noise and ours.match(proc.stderr.lstrip("\r\n")), noise[:5]
    printed = proc.stdout
    for model in ("MiniMonkey", "InternVL2-2B"):
        run_dir = out / model
        summary = pd.read_csv(run_dir / "summary.csv")
        assert len(summary) == 1 and bool(summary.loc[0, "demo"]) is True
        for column in PAPER_COLUMNS:                      # a number in every column
            value = summary.loc[0, column]
            assert isinstance(value, float) and not pd.isna(value), (model, column)
        meta = json.loads((run_dir / "run.json").read_text())
        assert meta["demo"] is True and meta["max_new_tokens"] == 8 and "demo_note" in meta
        assert meta["datasets"] == list(DEFAULT_DATASETS) and meta["timings"]["finished"]
        assert meta["msac"] is (model == "MiniMonkey")
        assert {v["kind"] for v in meta["tiles"].values()} == {"msac" if model == "MiniMonkey" else "dynamic"}
        for name in DEFAULT_DATASETS:
            assert (run_dir / f"{name}_score.csv").exists() and (run_dir / f"{name}_samples.csv").exists()
            assert (run_dir / f"{model}_{name}.xlsx").exists()
        assert f"summary: {run_dir / 'summary.csv'}" in printed
    report = out / "report" / "report.md"
    assert report.exists() and DEMO_TAG in report.read_text()
    section = report.read_text().split("## Where the runs sit")[1]   # every published row of both cards, ranks, charts
    assert all(f"| {label} | published (" in section for label in all_published()["label"])
    assert "### Rank among the published rows shown" in section and (out / "report" / "landscape_MME.png").exists()
    assert f"report: {report}" in printed
    # the significance section
    sig = report.read_text().split("## Is the difference real?")[1].split("## Breakdowns")[0]
    assert sig.count("| not distinguishable |") == len(PAPER_COLUMNS) and "## Flip lists" in sig
    assert (out / "report" / "forest.png").exists() and "(forest.png)" in sig
    print(f"demo wall time: {seconds:.0f} s")
