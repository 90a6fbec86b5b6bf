"""Helpers shared by the runner tests (not a test module)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Small tiles and short answers keep the tiny model fast; the tile tables themselves are tested elsewhere.
FAST_TILES = "1-2/1-1"


def cli_env(**extra) -> dict:
    """Environment for a ``python -m minimonkey_eval.cli`` subprocess: this checkout importable, no progress bars."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env["MINIMONKEY_NO_PROGRESS"] = "1"
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    env.update(extra)
    return env


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "minimonkey_eval.cli", *map(str, args)]


def sample_root(tmp_path_factory, dataset: str, rows: int) -> Path:
    """A fresh LMUData folder holding ``rows`` synthetic rows of ``dataset``."""
    from minimonkey_eval.datasets.fixtures import write_sample_tsvs

    root = tmp_path_factory.mktemp("LMUData")
    write_sample_tsvs(root, datasets=[dataset], n=rows)
    return root


def run_argv(ckpt, lmudata, work_dir, dataset: str, tiles: str, max_new_tokens: int, run_name: str = "killed"):
    """``minimonkey-eval run`` of MiniMonkey on one dataset, batch 1, fp32 CPU (the kill tests' subprocess)."""
    return cli("run", "--model", "MiniMonkey", "--model-path", ckpt, "--data", dataset, "--data-root", lmudata,
               "--work-dir", work_dir, "--run-name", run_name, "--tiles", tiles, "--max-new-tokens", max_new_tokens,
               "--batch-size", 1, "--dtype", "fp32", "--device", "cpu")


def uninterrupted_run_dir(work_dir, ckpt, lmudata, engine, dataset: str, tiles: str, max_new_tokens: int) -> Path:
    """The same run as ``run_argv``, uninterrupted and in process on the shared fp32 engine: the reference."""
    from minimonkey_eval.eval.runner import RunOptions, run

    return run(RunOptions(model="MiniMonkey", datasets=[dataset], model_path=str(ckpt), data_root=str(lmudata),
                          work_dir=str(work_dir), run_name="whole", tiles=tiles, max_new_tokens=max_new_tokens,
                          batch_size=1), engine=engine).run_dir


def merged_predictions(run_dir: Path, dataset: str) -> list[tuple]:
    """(index, prediction, failed) of the merged predictions file, in dataset order."""
    lines = (Path(run_dir) / "predictions" / f"{dataset}.jsonl").read_text(encoding="utf-8").splitlines()
    return [(r["index"], r["prediction"], r["failed"]) for r in map(json.loads, lines)]


def part_lines(run_dir: Path, dataset: str) -> list[dict]:
    """Every complete line of every part file (duplicates included)."""
    out = []
    for path in sorted((Path(run_dir) / "predictions").glob(f"{dataset}.part*.jsonl")):
        data = path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1] if b"\n" in data else b""
        out += [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]
    return out


class CountingEngine:
    """Engine proxy that counts the samples the pipeline hands to the device (``generate_prepared``)."""

    def __init__(self, engine):
        self._engine = engine
        self.samples = 0
        self.calls = 0
        self.batches: list[int] = []

    def generate_prepared(self, batch, *args, **kwargs):
        self.calls += 1
        self.samples += len(batch)
        self.batches.append(len(batch))
        return self._engine.generate_prepared(batch, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._engine, name)
