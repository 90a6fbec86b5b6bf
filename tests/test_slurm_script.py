"""``scripts/slurm_run_all.sbatch`` outside Slurm: with stand-ins for ``scontrol``, ``srun`` and ``torchrun`` on PATH
it composes one srun task per node and, through scripts/run_all_benchmarks.sh, the torchrun line of the two-node
rehearsal (tests/test_two_nodes.py): c10d rendezvous on the first node, one agent per node, GPUS_PER_NODE ranks."""
from __future__ import annotations

import os
import subprocess

from helpers.runner_utils import REPO

SCRIPT = REPO / "scripts" / "slurm_run_all.sbatch"
STUBS = {
    "scontrol": 'printf "gpu-a17\\ngpu-a18\\n"\n',
    # srun: record its options, then run the command as one node would
    "srun": 'echo "$@" > "$STUB_LOG/srun"\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n',
    "torchrun": 'printf "%s\\n" "$@" > "$STUB_LOG/torchrun"\nenv > "$STUB_LOG/env"\n',
}


def slurm_job(tmp_path, **env_extra) -> tuple[subprocess.CompletedProcess, dict]:
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name, body in STUBS.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WANDB_", "OMP_"))}
    env.pop("LMUData", None)
    env.update({"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "STUB_LOG": str(log), "SLURM_JOB_NODELIST":
                "gpu-a[17-18]", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": str(REPO),
                "SLURM_CPUS_PER_TASK": "64", **env_extra})
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    logged = {p.name: p.read_text() for p in log.iterdir()}
    return proc, logged


def test_sbatch_composes_one_torchrun_agent_per_node(tmp_path):
    proc, logged = slurm_job(tmp_path, MODEL_PATH="/ckpt/Mini-Monkey", EXTRA_ARGS="--run-name paper --scm")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert logged["srun"].startswith("--ntasks-per-node=1 --kill-on-bad-exit=1 env NPROC=8 ")
    assert logged["torchrun"].splitlines() == [
        "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "gpu-a17:29500", "--rdzv-id", "4242",
        "--max-restarts", "0", "--nproc-per-node", "8", "-m", "minimonkey_eval.cli", "run-all",
        "--model", "MiniMonkey", "--model-path", "/ckpt/Mini-Monkey", "--data", "all", "--data-root",
        "/shared/LMUData", "--work-dir", "/shared/results", "--run-name", "paper", "--scm"]
    env = dict(line.split("=", 1) for line in logged["env"].splitlines() if "=" in line)
    assert env["LMUData"] == "/shared/LMUData"
    assert (env["HF_HUB_OFFLINE"], env["TRANSFORMERS_OFFLINE"], env["WANDB_MODE"]) == ("1", "1", "offline")
    assert env["OMP_NUM_THREADS"] == "8"        # 64 CPUs per node task / 8 ranks
    assert "rendezvous gpu-a17:29500" in proc.stdout


def test_sbatch_variables_are_overridable(tmp_path):
    proc, logged = slurm_job(tmp_path, GPUS_PER_NODE="4", PORT="31000", DATA="MME,OCRBench", LMUData="/data/lmu",
                             SLURM_CPUS_PER_TASK="2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    args = logged["torchrun"].splitlines()
    assert args[args.index("--rdzv-endpoint") + 1] == "gpu-a17:31000"
    assert args[args.index("--nproc-per-node") + 1] == "4"
    assert args[args.index("--data") + 1] == "MME,OCRBench"
    assert args[args.index("--data-root") + 1] == "/data/lmu"
    assert "OMP_NUM_THREADS=1\n" in logged["env"]   # fewer CPUs than ranks: one thread each, never 0
