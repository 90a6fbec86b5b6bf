"""Helpers shared by the runner tests (not a test module)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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


def cli_args(*args) -> list[str]:
    return [str(a) for a in args]


def cli(*args) -> list[str]:
    """argv of a fresh ``python -m minimonkey_eval.cli ARGS`` process."""
    return [sys.executable, "-m", "minimonkey_eval.cli", *cli_args(*args)]


def sample_root(tmp_path_factory, dataset: str, rows: int) -> Path:
    """A fresh LMUData folder holding ``rows`` synthetic rows of ``dataset``."""
    from minimonkey_eval.datasets.fixtures import write_sample_tsvs

    root = tmp_path_factory.mktemp("LMUData")
    write_sample_tsvs(root, datasets=[dataset], n=rows)
    return root


def run_args(ckpt, lmudata, work_dir, dataset: str, tiles: str, max_new_tokens: int, run_name: str = "killed"):
    """``minimonkey-eval run`` arguments: MiniMonkey on one dataset, batch 1, fp32 CPU (the kill tests' process)."""
    return cli_args("run", "--model", "MiniMonkey", "--model-path", ckpt, "--data", dataset, "--data-root", lmudata,
               "--work-dir", work_dir, "--run-name", run_name, "--tiles", tiles, "--max-new-tokens", max_new_tokens,
               "--batch-size", 1, "--dtype", "fp32", "--device", "cpu")


def uninterrupted_run_dir(work_dir, ckpt, lmudata, engine, dataset: str, tiles: str, max_new_tokens: int) -> Path:
    """The same run as ``run_args``, uninterrupted and in process on the shared fp32 engine: the reference."""
    from minimonkey_eval.eval.launch import run
    from minimonkey_eval.eval.run.options import RunOptions

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


class VisionKeyRecorder:
    """Engine proxy that records, per batch the pipeline hands to the device, each sample's ``vision_key`` (which
    image it is) and answers "x" without computing (what the reuse tests check: how images were grouped)."""

    def __init__(self, engine):
        self._engine = engine
        self.batches: list[list] = []

    def generate_prepared(self, batch, **options):
        self.batches.append([p.vision_key for p in batch])
        return ["x"] * len(batch)

    def __getattr__(self, name):
        return getattr(self._engine, name)


# --------------------------------------------------------------------------------------- deterministic stops
GATE_SITECUSTOMIZE = '''
"""Test gate (tests/helpers/runner_utils.gated_env): the run blocks at a known point until the test has stopped it."""
import os, time
from pathlib import Path

_AFTER = int(os.environ["GATE_AFTER"])          # block after this many records of this process are on disk
_TORN = os.environ.get("GATE_TORN") == "1"       # ... with half of the next record written (a torn line)
_REACHED = Path(os.environ["GATE_REACHED"])      # created when the gate is reached
_OPEN = Path(os.environ["GATE_OPEN"])            # the gate waits until this file exists


def _wait():
    _REACHED.write_text("reached")
    deadline = time.monotonic() + 900             # an abandoned gate (the test process died) ends its process
    while not _OPEN.exists():
        if time.monotonic() > deadline:
            os._exit(99)
        time.sleep(0.01)


def _install():
    from minimonkey_eval.eval.run import store as predictions

    real_append = predictions.PartWriter.append
    state = {"written": 0}

    def append(self, records):
        records = list(records)
        room = _AFTER - state["written"]
        if room >= len(records):
            real_append(self, records)
            state["written"] += len(records)
            if state["written"] == _AFTER and not _TORN:
                _wait()
            return
        real_append(self, records[:max(room, 0)])
        state["written"] += max(room, 0)
        if _TORN:
            import json
            line = (json.dumps(records[max(room, 0)], ensure_ascii=False) + "\\n").encode()
            os.write(self._fd, line[:len(line) // 2])
            os.fsync(self._fd)
        _wait()

    predictions.PartWriter.append = append


_install()
'''


def gated_env(tmp_path: Path, after: int, torn: bool = False, **extra) -> tuple[dict, Path, Path]:
    """``(env, reached, open_file)``: a ``cli`` process with this env (started by ``WarmCli.spawn`` with
    ``prelude=GATE_SITECUSTOMIZE``, or as a plain subprocess: the gate is also installed as a sitecustomize on its
    PYTHONPATH) blocks once ``after`` records of this process are fsync'd (``torn``: plus half of the next line),
    creating ``reached``; it goes on once ``open_file`` exists. The stop lands at a known sample, never after a
    random sleep."""
    site = Path(tmp_path) / f"gate_site_{after}_{int(torn)}"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(GATE_SITECUSTOMIZE)
    reached, open_file = site / "reached", site / "open"
    for p in (reached, open_file):
        p.unlink(missing_ok=True)
    env = cli_env(GATE_AFTER=str(after), GATE_TORN="1" if torn else "0", GATE_REACHED=str(reached),
                  GATE_OPEN=str(open_file), **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    return env, reached, open_file


def wait_for_gate(child, reached: Path, timeout: float = 300.0) -> None:
    """Wait until the gated process blocks at its gate (or fail, with its output, if it ends first)."""
    import time

    deadline = time.monotonic() + timeout
    while not reached.exists():
        if not child.running():
            raise AssertionError(f"run ended (rc {child.wait()}) before reaching its gate:\n{child.output}")
        if time.monotonic() > deadline:
            os.kill(child.pid, 9)
            raise AssertionError("run did not reach its gate in time")
        time.sleep(0.01)


def signal_at_gate(warm, args, env: dict, reached: Path, log: Path, sig: int = 9):
    """Spawn ``minimonkey-eval ARGS`` (``warm``: a ``WarmCli`` or ``FreshCli``) with a gated ``env`` (``gated_env``),
    send it ``sig`` (default SIGKILL) once it blocks at its gate, wait for it; returns the ``Child`` (``returncode``,
    ``output``)."""
    child = warm.spawn(args, env, log, prelude=GATE_SITECUSTOMIZE)
    try:
        wait_for_gate(child, reached)
        os.kill(child.pid, sig)
        child.wait(timeout=60)
    finally:
        if child.running():
            os.kill(child.pid, 9)
        child.wait()
    return child


def warm_run(warm, args, log: Path, timeout: float = 600.0):
    """``minimonkey-eval ARGS`` to its end from ``warm`` (plain ``cli_env()``); returns the ``Child``."""
    child = warm.spawn(args, cli_env(), log)
    child.wait(timeout)
    return child


def cli_call(argv, capsys) -> tuple[int, str]:
    """(exit code, stderr) of one in-process CLI call; a value argparse refuses exits through SystemExit."""
    from minimonkey_eval import cli

    capsys.readouterr()
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err.strip()


def one_error_line(rc, err, *needles) -> str:
    """Exit 2 with exactly one ``error:`` line, no traceback, holding every needle."""
    assert rc == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err
