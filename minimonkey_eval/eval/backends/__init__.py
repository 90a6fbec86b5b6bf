"""Backends: what answers a run's questions, behind the runner's one seam (``eval.run.backend.Backend``).

* ``engine_backend.EngineBackend``: a registered model (``--model MiniMonkey`` ...) on our engine and pipeline, through
  the VLMEvalKit wrappers of ``engine.py`` (prompts: ``prompts.py``; the authors' setting: ``authors_setting.py``;
  ``bench``'s reference mode: ``reference.py``);
* ``vlmeval_wrapper.VLMEvalBackend``: any VLMEvalKit model (``--model vlmeval:NAME``) through its own wrapper.

:func:`make_backend` is the one place that picks a backend from ``RunOptions.model``; a new backend (a serving
engine) is one more class implementing the protocol and one more branch here. May import ``eval.run``'s types
(options, the protocol, ``RunError``), ``models`` and ``datasets``; ``eval.run`` never imports this package (the runner
is handed a backend: ``eval.launch`` joins the two).
"""
from __future__ import annotations

from minimonkey_eval.eval.backends.engine_backend import EngineBackend
from minimonkey_eval.eval.backends.vlmeval_wrapper import VLMEvalBackend, is_vlmeval_model


def make_backend(opts, ctx, engine=None):
    """The backend for ``opts.model``: VLMEvalKit's wrapper for ``vlmeval:NAME``, else our engine (``engine``: an
    already loaded ``models.Engine`` to use instead of loading the model path)."""
    if is_vlmeval_model(opts.model):
        return VLMEvalBackend(opts, ctx)
    return EngineBackend(opts, ctx, engine)


__all__ = ["EngineBackend", "VLMEvalBackend", "make_backend"]
