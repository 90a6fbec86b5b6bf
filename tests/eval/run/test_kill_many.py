"""SIGKILL one ``minimonkey-eval run`` process (forked warm, tests/helpers/warm_cli.py) on the tiny model 10 times, each
at a known point (a gate in the subprocess blocks it after N fsync'd records, some with half of the next line written),
then let it finish: every kill kept exactly the records written before it, a torn line is dropped, and the merged
predictions equal an uninterrupted run's, no index lost or duplicated (kind 40 of tests/eval/run/test_faults.py).
"""
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

DATASET = "OCRBench"
ROWS = 14
TILES = "1-2/1-1"
# (records this process writes before it is killed, a torn half line after them?): before the first record, after
# one, two, ... with and without a torn tail; 11 records in all, so the final run still has 3 to do.
KILLS = ((0, False), (1, True), (2, False), (1, False), (0, True), (2, False), (1, True), (1, False), (2, False),
         (1, True))


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory):
    return sample_root(tmp_path_factory, DATASET, ROWS)


def _args(ckpt, lmudata, work_dir):
    return run_args(ckpt, lmudata, work_dir, DATASET, TILES, max_new_tokens=4)


@pytest.mark.slow
def test_kill_many(tmp_path, tiny_checkpoint, engine, lmudata, warm_cli):
    work = tmp_path / "results"
    run_dir = work / "killed"
    done = 0
    for k, (after, torn) in enumerate(KILLS):
        env, reached, _ = gated_env(tmp_path / f"gate{k}", after, torn)
        killed = signal_at_gate(warm_cli, _args(tiny_checkpoint, lmudata, work), env, reached, tmp_path / f"log{k}")
        assert killed.returncode == -signal.SIGKILL, killed.output
        done += after
        lines = part_lines(run_dir, DATASET) if (run_dir / "predictions").is_dir() else []
        assert len(lines) == done, f"kill {k}: {len(lines)} records on disk, expected {done}"
        assert len({r["index"] for r in lines}) == done                          # none twice
    final = warm_run(warm_cli, _args(tiny_checkpoint, lmudata, work), tmp_path / "final.log")
    assert final.returncode == 0, final.output
    assert f"({ROWS} rows, {ROWS - done} inferred now)" in final.output        # only the missing ones
    indices = [r["index"] for r in part_lines(run_dir, DATASET)]
    assert sorted(indices) == list(range(ROWS))                                   # none twice, none lost
    reference = uninterrupted_run_dir(tmp_path / "reference", tiny_checkpoint, lmudata, engine, DATASET, TILES, 4)
    assert merged_predictions(run_dir, DATASET) == merged_predictions(reference, DATASET)
