"""With the network unreachable, a whole ``minimonkey-eval run`` (every scoring path) succeeds: nothing tries to
download. A ``sitecustomize`` in the subprocess makes every IP ``connect`` raise and logs the attempt."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
from helpers.runner_utils import FAST_TILES, cli, cli_env

from minimonkey_eval.datasets.fixtures import write_sample_tsvs
from minimonkey_eval.datasets.registry import get_benchmark

# one dataset per scoring path: Y/N, MCQ, circular MCQ, MMMU, VQA (ANLS), OCRBench, MathVista (offline extraction)
DATASETS = ("MME", "AI2D_TEST", "MMBench_DEV_EN", "MMMU_DEV_VAL", "DocVQA_VAL", "OCRBench", "MathVista_MINI")

SITECUSTOMIZE = '''
import os, socket

_LOG = os.environ["NET_ATTEMPTS_LOG"]
_real_connect, _real_connect_ex = socket.socket.connect, socket.socket.connect_ex


def _blocked(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        with open(_LOG, "a") as f:
            f.write(repr(address) + "\\n")
        raise OSError(101, "Network is unreachable (blocked by test_offline)")
    return _real_connect(self, address, *args)


def _blocked_ex(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _blocked(self, address)
    return _real_connect_ex(self, address, *args)


socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked_ex
'''


def test_run_with_network_blocked(tmp_path, tiny_checkpoint):
    lmudata = tmp_path / "LMUData"
    write_sample_tsvs(lmudata, datasets=list(DATASETS), n=3)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "attempts.log"
    env = cli_env(NET_ATTEMPTS_LOG=str(log), HOME=str(tmp_path / "home"))   # no ~/LMUData, no cached .env
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    for key in ("LMUData", "OPENAI_API_KEY", "OPENAI_API_BASE", "HF_HUB_OFFLINE"):
        env.pop(key, None)
    # the block works: a plain connect is refused and logged
    connect = "import socket; socket.create_connection(('127.0.0.1', 9), timeout=1)"
    probe = subprocess.run([sys.executable, "-c", connect], env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "blocked by test_offline" in probe.stderr
    assert log.read_text().strip() == "('127.0.0.1', 9)"
    log.unlink()

    work = tmp_path / "results"
    proc = subprocess.run(cli("run", "--model", "MiniMonkey", "--model-path", tiny_checkpoint, "--data",
                              ",".join(DATASETS), "--data-root", lmudata, "--work-dir", work, "--run-name", "offline",
                              "--tiles", FAST_TILES, "--max-new-tokens", 4, "--device", "cpu"),
                          env=env, capture_output=True, text=True, timeout=600)
    attempts = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert attempts == "", f"network connections attempted:\n{attempts}"
    summary = pd.read_csv(work / "offline" / "summary.csv")
    for name in DATASETS:
        assert not pd.isna(summary.loc[0, get_benchmark(name).column]), name
    assert not (tmp_path / "home" / "LMUData").exists()
