"""The engine: original-format checkpoints on transformers' native modules, MSAC/dynamic tiling, SCM, batched generate.

Imports only torch, transformers (and its tokenizers), safetensors, sentencepiece and Pillow (never vlmeval).
"""
from .checkpoint import CheckpointError, load_pretrained
from .engine import DEFAULT_TILING, Engine, Tiling, tile_image
from .tiling import Tiles, dynamic_tiles, dynamic_tiling, msac_tiles, msac_tiling
from .tokenizer import InternLM2Tokenizer, NativeTokenizer, TokenizerError, load_tokenizer

__all__ = [
    "CheckpointError", "DEFAULT_TILING", "Engine", "InternLM2Tokenizer", "NativeTokenizer", "Tiles", "Tiling",
    "TokenizerError", "dynamic_tiles", "dynamic_tiling", "load_pretrained", "load_tokenizer", "msac_tiles",
    "msac_tiling", "tile_image",
]
