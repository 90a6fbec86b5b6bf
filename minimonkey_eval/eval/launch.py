"""Starting a run: options -> backend (``eval.backends.make_backend``) -> ``eval.run.Runner`` -> result.

The one module that joins ``eval/run`` (the runner, which is handed a backend) and ``eval/backends`` (which picks
one); ``run`` / ``run-all``, ``demo``, ``sweep``, ``bench`` and Python callers start runs through :func:`run` or
:func:`make_runner`.
"""
from __future__ import annotations

from minimonkey_eval.eval.backends import make_backend
from minimonkey_eval.eval.run.distributed import DistContext
from minimonkey_eval.eval.run.options import RunOptions, RunResult, check_options
from minimonkey_eval.eval.run.runner import Runner


def make_runner(opts: RunOptions, ctx: DistContext | None = None, engine=None) -> Runner:
    """The runner for ``opts``: its options checked, then its backend built (``engine``: an already loaded
    ``models.Engine`` for a registered model)."""
    check_options(opts)
    ctx = ctx or DistContext()
    return Runner(opts, make_backend(opts, ctx, engine), ctx)


def run(opts: RunOptions, engine=None, ctx: DistContext | None = None) -> RunResult:
    """``minimonkey-eval run``: infer + score every dataset of ``opts`` into ``{work_dir}/{run_name}`` (``ctx``:
    torchrun's context; by default read from the environment, and closed after)."""
    own_ctx = ctx is None
    ctx = ctx or DistContext.from_env(opts.device)
    try:
        return make_runner(opts, ctx, engine).run()
    finally:
        if own_ctx:
            ctx.close()
