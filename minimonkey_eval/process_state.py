"""Every process-wide setting a run changes, as context managers that put back what they changed.

A run (or a dataset load) touches three things outside itself: Pillow's decompression-bomb limit
(``Image.MAX_IMAGE_PIXELS``, ``--max-image-pixels``), ``$LMUData`` (VLMEvalKit reads its data root from it while it
imports and builds a dataset) and the Hugging Face offline switches (``$HF_HUB_OFFLINE`` / ``$TRANSFORMERS_OFFLINE``
and the already-imported ``huggingface_hub.constants.HF_HUB_OFFLINE``, while a VLMEvalKit wrapper is built). They are
changed here and nowhere else, each for the length of a ``with`` block, so a Python caller finds them as they were.
One change is VLMEvalKit's own: its first import in a process sets ``Image.MAX_IMAGE_PIXELS = 1e9``
(``vlmeval/smp/vlm.py``), the default a run keeps when ``--max-image-pixels`` is not given.
Imports nothing heavy at module level.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

LMUDATA_ENV = "LMUData"
HF_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """``os.environ`` updated with ``values`` inside the block; each variable restored (or removed) after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def pillow_pixel_limit(limit: int | None):
    """Pillow's ``Image.MAX_IMAGE_PIXELS`` set to ``limit`` inside the block (``None``: left as it is; ``0``: no
    limit); restored after."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    if limit is not None:
        Image.MAX_IMAGE_PIXELS = limit or None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def lmudata_env(root: str | Path):
    """``$LMUData`` pointing at ``root`` inside the block (VLMEvalKit reads it when it imports and builds a dataset)."""
    return _environ({LMUDATA_ENV: str(root)})


@contextlib.contextmanager
def hub_offline(allow: bool):
    """Hugging Face downloads off inside the block (environment and the already-imported hub constant) unless
    ``allow``; restored after."""
    if allow:
        yield
        return
    patched = []
    with _environ(dict.fromkeys(HF_OFFLINE_ENV, "1")):
        with contextlib.suppress(ImportError):
            import huggingface_hub.constants as hub_constants

            patched.append((hub_constants, "HF_HUB_OFFLINE", hub_constants.HF_HUB_OFFLINE))
            hub_constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            for obj, attr, value in patched:
                setattr(obj, attr, value)
