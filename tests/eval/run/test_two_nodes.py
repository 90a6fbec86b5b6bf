"""Multi-node, rehearsed on one machine: two ``torchrun --nnodes 2 --nproc-per-node 1`` agents (c10d rendezvous on
localhost, gloo on CPU) share one work dir, as two Slurm nodes share a filesystem (scripts/slurm_run_all.sbatch);
the merged predictions and the score sheet equal a single-process run of the same rows."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid

import pytest
import torch
from helpers.runner_utils import FAST_TILES, cli_env, merged_predictions

from minimonkey_eval.datasets.fixtures import write_sample_tsvs
from minimonkey_eval.eval.launch import run
from minimonkey_eval.eval.run.options import RunOptions

DATASET = "MME"        # image pairs: each pair stays whole on one node
ROWS = 2               # synthetic images (two questions each)
TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_cmd(port: int, rdzv_id: str, run_args: list[str]) -> list[str]:
    """One "node": a torchrun agent with one process, joining the other through the c10d rendezvous."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", rdzv_id,
            "--max-restarts", "0", "-m", "minimonkey_eval.cli", "run", *run_args]


@pytest.mark.slow          # two torchrun agents and their workers start afresh: ~35-80 s on 2 shared cores
def test_two_nodes_match_one_process(tmp_path, tiny_checkpoint, engine):
    lmudata = tmp_path / "LMUData"
    write_sample_tsvs(lmudata, datasets=[DATASET], n=ROWS)
    work = tmp_path / "shared" / "results"          # the "shared filesystem" both nodes write to
    args = [str(a) for a in ("--model", "MiniMonkey", "--model-path", tiny_checkpoint, "--data", DATASET,
                             "--data-root", lmudata, "--work-dir", work, "--run-name", "two-nodes", "--tiles",
                             FAST_TILES, "--max-new-tokens", 6, "--batch-size", 1, "--device", "cpu", "--dtype",
                             "fp32")]
    cmd = node_cmd(free_port(), f"test-{uuid.uuid4().hex[:8]}", args)
    env = cli_env(OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path) for _ in range(2)]
    outs = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for p in procs:
            outs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"the two torchrun nodes did not finish in {TIMEOUT_S} s")
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out[-3000:] + err[-5000:]
    assert sum(out.count("run folder:") for out, _ in outs) == 1      # only global rank 0 reports

    run_dir = work / "two-nodes"
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["timings"]["finished"]
    parts = sorted(p.name for p in (run_dir / "predictions").glob(f"{DATASET}.part*.jsonl"))
    assert parts == [f"{DATASET}.part0.jsonl", f"{DATASET}.part1.jsonl"]   # each node answered its own share
    for part in parts:
        assert (run_dir / "predictions" / part).read_text().strip()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # single-threaded like the torchrun workers
    try:
        single = run(RunOptions(model="MiniMonkey", datasets=[DATASET], model_path=str(tiny_checkpoint),
                                data_root=str(lmudata), work_dir=str(tmp_path / "single"), run_name="one",
                                tiles=FAST_TILES, max_new_tokens=6, batch_size=1), engine=engine)
    finally:
        torch.set_num_threads(threads)
    merged = merged_predictions(run_dir, DATASET)
    assert len(merged) == 2 * ROWS
    assert merged == merged_predictions(single.run_dir, DATASET)
    assert (run_dir / f"{DATASET}_score.csv").read_text() == (single.run_dir / f"{DATASET}_score.csv").read_text()
