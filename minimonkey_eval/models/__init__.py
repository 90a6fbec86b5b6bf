"""The engine: original-format checkpoints on transformers' native modules, MSAC/dynamic tiling, SCM, batched generate.

Imports only torch, transformers (and its tokenizers), safetensors, sentencepiece and Pillow (never vlmeval),
and of this package only ``errors``: never ``datasets``, ``eval`` or ``cli`` (import-linter checks the last two and
vlmeval; contracts in pyproject.toml).
The names below load lazily (PEP 562), so the pure-data modules (``registry``, ``tile_profiles``) can be imported
by the CLI without importing torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "CheckpointError": "checkpoint", "load_pretrained": "checkpoint",
    "DEFAULT_TILING": "engine", "Engine": "engine", "tile_image": "engine",
    "ScmConfig": "settings", "Tiling": "settings",
    "Tiles": "tiling", "dynamic_tiles": "tiling", "dynamic_tiling": "tiling", "msac_tiles": "tiling",
    "msac_tiling": "tiling",
    "InternLM2Tokenizer": "tokenizer", "NativeTokenizer": "tokenizer", "TokenizerError": "tokenizer",
    "load_tokenizer": "tokenizer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
