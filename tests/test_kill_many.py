"""SIGKILL one ``minimonkey-eval run`` on the tiny model >= 10 times at random moments, then let it finish: the merged
predictions equal an uninterrupted run's, no index lost or duplicated (issue 6, kind 40 of tests/test_faults.py)."""
from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from runner_utils import (cli_env, merged_predictions, part_lines, run_argv, sample_root,
                          uninterrupted_run_dir)

DATASET = "OCRBench"
ROWS = 14
TILES = "1-2/1-1"
KILLS = 10


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory):
    return sample_root(tmp_path_factory, DATASET, ROWS)


def _argv(ckpt, lmudata, work_dir):
    return run_argv(ckpt, lmudata, work_dir, DATASET, TILES, max_new_tokens=4)


def test_kill_many(tmp_path, tiny_checkpoint, engine, lmudata):
    rng = random.Random(6)
    work = tmp_path / "results"
    run_dir = work / "killed"
    kills = 0
    for attempt in range(3 * KILLS):
        if kills >= KILLS:
            break
        before = len(part_lines(run_dir, DATASET)) if (run_dir / "predictions").is_dir() else 0
        proc = subprocess.Popen(_argv(tiny_checkpoint, lmudata, work), env=cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # a random moment: mostly while samples are written, sometimes during start-up or scoring
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.0, 3.0))
        else:
            deadline = time.monotonic() + 60
            target = before + 1
            while time.monotonic() < deadline and proc.poll() is None:
                if (run_dir / "predictions").is_dir() and len(part_lines(run_dir, DATASET)) >= target:
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    assert kills >= KILLS
    final = subprocess.run(_argv(tiny_checkpoint, lmudata, work), env=cli_env(), capture_output=True, text=True,
                           timeout=300)
    assert final.returncode == 0, final.stderr
    indices = [r["index"] for r in part_lines(run_dir, DATASET)]
    assert sorted(indices) == list(range(ROWS))          # none twice, none lost
    reference = uninterrupted_run_dir(tmp_path / "reference", tiny_checkpoint, lmudata, engine, DATASET, TILES, 4)
    assert merged_predictions(run_dir, DATASET) == merged_predictions(reference, DATASET)
