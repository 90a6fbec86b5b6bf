"""SIGKILL a freshly started ``python -m minimonkey_eval.cli run`` (no forkserver: the one kill test that pays a
real start-up) after its third fsync'd prediction (a gate in the subprocess holds it there), rerun: it completes
with every sample inferred exactly once and the merged predictions identical to an uninterrupted run."""
from __future__ import annotations

import signal

import pytest
from helpers.runner_utils import (
    gated_env,
    merged_predictions,
    part_lines,
    run_args,
    sample_root,
    signal_at_gate,
    uninterrupted_run_dir,
    warm_run,
)
from helpers.warm_cli import FreshCli

DATASET = "OCRBench"
ROWS = 12
TILES = "2-4/1-2"
KILL_AFTER = 3


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory):
    return sample_root(tmp_path_factory, DATASET, ROWS)


def _args(ckpt, lmudata, work_dir):
    return run_args(ckpt, lmudata, work_dir, DATASET, TILES, max_new_tokens=6)


@pytest.mark.slow
def test_sigkill_then_rerun_completes_without_duplicates(tmp_path, tiny_checkpoint, engine, lmudata):
    work = tmp_path / "results"
    run_dir = work / "killed"
    env, reached, _ = gated_env(tmp_path, KILL_AFTER)
    fresh = FreshCli()
    killed = signal_at_gate(fresh, _args(tiny_checkpoint, lmudata, work), env, reached, tmp_path / "killed.log")
    assert killed.returncode == -signal.SIGKILL, killed.output
    assert len(part_lines(run_dir, DATASET)) == KILL_AFTER
    assert not (run_dir / "predictions" / f"{DATASET}.jsonl").exists()   # never merged

    rerun = warm_run(fresh, _args(tiny_checkpoint, lmudata, work), tmp_path / "rerun.log")
    assert rerun.returncode == 0, rerun.output
    assert f"({ROWS} rows, {ROWS - KILL_AFTER} inferred now)" in rerun.output   # only the missing samples

    lines = part_lines(run_dir, DATASET)
    indices = [r["index"] for r in lines]
    assert len(indices) == ROWS and sorted(indices) == list(range(ROWS))   # none twice, none lost
    resumed = merged_predictions(run_dir, DATASET)

    # the same run, uninterrupted, in process on the same fp32 CPU weights
    reference = uninterrupted_run_dir(tmp_path / "reference", tiny_checkpoint, lmudata, engine, DATASET, TILES, 6)
    assert resumed == merged_predictions(reference, DATASET)
    assert (run_dir / f"{DATASET}_score.csv").read_text() == (reference / f"{DATASET}_score.csv").read_text()
