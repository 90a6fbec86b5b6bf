"""A warm launcher for CLI processes the tests kill (not a test module).

Each SIGKILL / SIGINT test used to start ``python -m minimonkey_eval.cli`` afresh, paying ~10 s of imports (torch,
transformers, vlmeval) per process, ten times in a row for ``test_kill_many``. A ``WarmCli`` process imports all
that once and then forks one child per command: the child is a real, separate process (its own pid, killed with a
real SIGKILL or SIGINT, its files written by the real code) that starts with the imports done.

Forking is safe here for the reason it is in a DataLoader worker: the launcher never runs a torch op before it
forks (no OpenMP pool, no CUDA context) and has no Python thread besides the main one (checked at start-up); the
idle native threads that importing torch and pyarrow start (a futex waiter, jemalloc's background thread) hold no
lock the child needs. Environment settings that take effect at import time are set before the
imports (``OMP_WAIT_POLICY`` as ``cli.main`` sets it); the others are applied in the child before ``cli.main``.

Protocol over the launcher's stdin/stdout, one JSON line each way: ``{"spawn": {...}}`` -> ``{"pid": N}``;
``{"wait": N}`` -> ``{"status": S}`` (``S`` as ``subprocess``: the exit code, or -signal).
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = r'''
import json, os, signal, sys, tempfile, threading, traceback

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")       # as cli.main: read when torch loads OpenMP
from minimonkey_eval.datasets.local import import_vlmeval
with tempfile.TemporaryDirectory() as root:
    import_vlmeval(root)                                   # nothing lands in ~/LMUData
import torch, transformers                                 # noqa: F401
import minimonkey_eval.cli as cli
import minimonkey_eval.eval.runner, minimonkey_eval.eval.scoring, minimonkey_eval.models.engine  # noqa: F401
import minimonkey_eval.eval.sweep, minimonkey_eval.eval.report  # noqa: F401
import vlmeval.smp, vlmeval.dataset                        # noqa: F401
assert threading.active_count() == 1, threading.enumerate()   # no Python thread that a fork would cut off
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)                                              # stray prints of the launcher go to stderr


def child(cmd):
    out.close()                                            # the launcher's answers are not the child's
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.environ.clear()
    os.environ.update(cmd["env"])
    os.chdir(cmd["cwd"])
    fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["minimonkey-eval", *cmd["argv"]]
    if cmd.get("prelude"):
        exec(compile(cmd["prelude"], "<test prelude>", "exec"), {"__name__": "test_prelude"})
    try:
        rc = cli.main(cmd["argv"])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc or 0)


out.write(json.dumps({"ready": True}) + "\n")
out.flush()
for line in sys.stdin:
    cmd = json.loads(line)
    if "spawn" in cmd:
        pid = os.fork()
        if pid == 0:
            child(cmd["spawn"])
        out.write(json.dumps({"pid": pid}) + "\n")
    elif "wait" in cmd:
        _, status = os.waitpid(cmd["wait"], 0)
        out.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
    out.flush()
'''


@dataclass
class Child:
    """One CLI process: ``pid`` (signal it directly), ``log`` (its stdout + stderr), ``wait()`` -> return code."""
    pid: int
    log: Path
    launcher: "WarmCli | FreshCli"
    returncode: int | None = None

    def wait(self, timeout: float = 300.0) -> int:
        if self.returncode is None:
            self.returncode = self.launcher._wait(self, timeout)
        return self.returncode

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


class WarmCli:
    """Start with the environment of ``runner_utils.cli_env()``; ``spawn(args, env, log)`` forks a child running
    ``minimonkey-eval ARGS`` (``prelude``: Python run in the child first, e.g. a test gate)."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self._read(timeout=300.0)

    def _read(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"warm CLI launcher: no answer in {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"warm CLI launcher ended (rc {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def _ask(self, cmd: dict, timeout: float = 60.0) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def spawn(self, args, env: dict, log: Path, prelude: str | None = None) -> Child:
        cmd = {"argv": [str(a) for a in args], "env": env, "log": str(log), "cwd": os.getcwd(), "prelude": prelude}
        return Child(self._ask({"spawn": cmd})["pid"], Path(log), self)

    def _wait(self, child: Child, timeout: float) -> int:
        return self._ask({"wait": child.pid}, timeout)["status"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


class FreshCli:
    """The same interface, one fresh ``python -m minimonkey_eval.cli`` per command (imports paid every time): for
    the test that checks a real start-up. ``prelude`` is not run; a gate comes from ``gated_env``'s sitecustomize."""

    def __init__(self):
        self._procs: dict[int, subprocess.Popen] = {}

    def spawn(self, args, env: dict, log: Path, prelude: str | None = None) -> Child:
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "minimonkey_eval.cli", *map(str, args)], env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self._procs[proc.pid] = proc
        return Child(proc.pid, Path(log), self)

    def _wait(self, child: Child, timeout: float) -> int:
        return self._procs.pop(child.pid).wait(timeout)
