"""Shared pytest fixtures: a tiny original-format checkpoint and an fp32 CPU engine on it (built once per session)."""
from __future__ import annotations

import os

# Before torch loads OpenMP (as cli.main does): idle OpenMP threads sleep instead of spinning against the other
# test worker. Under pytest-xdist every worker computes on one core (intra-op threads 1, also in the CLI
# processes the tests start: runner_utils.cli_env), so two workers share 2 cores without oversubscription.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Content hashes of checkpoint files (models/identity.py) are cached in a per-session folder, not the user's cache.
if not os.environ.get("MINIMONKEY_EVAL_CACHE"):
    import tempfile

    os.environ["MINIMONKEY_EVAL_CACHE"] = tempfile.mkdtemp(prefix="minimonkey-eval-cache-")
XDIST_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if XDIST_WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

_STATUS_KEY = pytest.StashKey()
_CACHES = ("__pycache__", ".pytest_cache", ".egg-info", ".hypothesis")   # written by Python and pytest themselves

if XDIST_WORKER:
    torch.set_num_threads(1)


REPO = Path(__file__).resolve().parent.parent


def _checkout_status() -> set[str] | None:
    """``git status --porcelain`` of the checkout (None outside a git checkout or without git)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--ignored"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return {line for line in out.stdout.splitlines() if not any(cache in line for cache in _CACHES)}


def pytest_sessionstart(session):
    if not XDIST_WORKER:
        session.config.stash[_STATUS_KEY] = _checkout_status()


def pytest_sessionfinish(session, exitstatus):
    """The suite fails when a test wrote into the checkout (tests write under their tmp_path only)."""
    before = session.config.stash.get(_STATUS_KEY, None)
    if XDIST_WORKER or before is None or os.environ.get("MUTANT_UNDER_TEST"):   # mutmut runs the tests in mutants/
        return
    after = _checkout_status() or set()
    new = sorted(after - before)
    if new:
        print(f"\nerror: the tests changed the checkout: {', '.join(new[:10])}", file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from minimonkey_eval.models.tiny_checkpoint import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def engine(tiny_checkpoint):
    from minimonkey_eval.models import Engine

    torch.manual_seed(0)
    return Engine.from_pretrained(tiny_checkpoint, dtype=torch.float32, device="cpu")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): on a small
    shared CPU, OpenMP threads spinning against other processes cost 5-10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def warm_cli():
    """A multiprocessing forkserver with torch / transformers / vlmeval preloaded, forking a real CLI process per
    command (tests/helpers/warm_cli.py): the kill and interrupt tests start ~10 processes without ~10 s of imports
    each."""
    from helpers.runner_utils import cli_env
    from helpers.warm_cli import WarmCli

    yield WarmCli(cli_env())
