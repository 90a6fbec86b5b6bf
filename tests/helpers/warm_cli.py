"""Warm CLI processes for the tests that kill them (not a test module).

Each SIGKILL / SIGINT test used to start ``python -m minimonkey_eval.cli`` afresh, paying ~10 s of imports (torch,
transformers, vlmeval) per process, ten times in a row for ``test_kill_many``. ``WarmCli`` uses the standard library's
``multiprocessing`` forkserver instead: the server imports all that once (``set_forkserver_preload``) and forks one
child per command. The child is a real, separate process (its own pid, killed with a real SIGKILL or SIGINT, its files
written by the real code) that starts with the imports done and runs ``cli.main(args)`` with the test's environment.
Forking from the server is safe for the reason it is in a DataLoader worker: the server only imports, it runs no
torch op (no OpenMP pool, no CUDA context) and starts no thread.

``FreshCli`` has the same interface with one fresh ``python -m minimonkey_eval.cli`` per command, for the test that
checks a real start-up (its gate is the sitecustomize ``runner_utils.gated_env`` puts on PYTHONPATH).
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ["torch", "transformers", "vlmeval.smp", "vlmeval.dataset", "minimonkey_eval.cli",
           "minimonkey_eval.eval.run.runner", "minimonkey_eval.eval.scoring", "minimonkey_eval.models.engine",
           "minimonkey_eval.eval.sweep.grid", "minimonkey_eval.eval.report.build"]


def run_cli(args: list[str], env: dict, log: str, prelude: str | None) -> None:
    """The child: the test's environment, output to ``log``, the optional test prelude (a gate), then ``cli.main``;
    exits with its return code (``multiprocessing`` reports a signal as ``-signum``)."""
    import signal

    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["minimonkey-eval", *args]
    if prelude:
        exec(compile(prelude, "<test prelude>", "exec"), {"__name__": "test_prelude"})
    from minimonkey_eval import cli

    try:
        rc = cli.main(args)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc or 0)


@dataclass
class Child:
    """One CLI process: ``pid`` (signal it directly), ``log`` (its stdout + stderr), ``wait()`` -> return code."""
    pid: int
    log: Path
    handle: object              # multiprocessing.Process | subprocess.Popen
    returncode: int | None = None

    def wait(self, timeout: float = 300.0) -> int:
        if self.returncode is None:
            if isinstance(self.handle, subprocess.Popen):
                self.returncode = self.handle.wait(timeout)
            else:
                self.handle.join(timeout)
                if self.handle.exitcode is None:
                    raise AssertionError(f"CLI process {self.pid} still running after {timeout:.0f} s")
                self.returncode = self.handle.exitcode
        return self.returncode

    def running(self) -> bool:
        if isinstance(self.handle, subprocess.Popen):
            return self.handle.poll() is None
        return self.handle.is_alive()

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


class WarmCli:
    """``spawn(args, env, log, prelude)`` forks ``minimonkey-eval ARGS`` from a preloaded forkserver."""

    def __init__(self, env: dict):
        from multiprocessing import forkserver

        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)
        saved = dict(os.environ)
        with tempfile.TemporaryDirectory() as root:          # the server imports vlmeval: nothing in ~/LMUData
            os.environ.update(env, LMUData=root, OMP_WAIT_POLICY="PASSIVE")   # as cli.main, before torch loads
            try:
                forkserver.ensure_running()
            finally:
                os.environ.clear()
                os.environ.update(saved)

    def spawn(self, args, env: dict, log: Path, prelude: str | None = None) -> Child:
        proc = self.ctx.Process(target=run_cli, args=([str(a) for a in args], dict(env), str(log), prelude))
        proc.start()
        return Child(proc.pid, Path(log), proc)


class FreshCli:
    """The same interface, one fresh ``python -m minimonkey_eval.cli`` per command (imports paid every time)."""

    def spawn(self, args, env: dict, log: Path, prelude: str | None = None) -> Child:
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "minimonkey_eval.cli", *map(str, args)], env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        return Child(proc.pid, Path(log), proc)
