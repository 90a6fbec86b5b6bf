"""Shared pytest fixtures: a tiny original-format checkpoint and an fp32 CPU engine on it (built once per session)."""
from __future__ import annotations

import pytest
import torch


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
    """One launcher process with torch / transformers / vlmeval imported, forking a real CLI process per command
    (tests/warm_cli.py): the kill and interrupt tests start ~10 processes without ~10 s of imports each."""
    from runner_utils import cli_env
    from warm_cli import WarmCli

    launcher = WarmCli(cli_env())
    yield launcher
    launcher.close()
