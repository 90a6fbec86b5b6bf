"""Engine option values (``--dtype``, ``--device``, ``--attn``): their parsers, checks and resolved defaults.

Each is checked when parsed: a bad value is argparse's one ``error:`` line (exit 2). ``check_device`` adds what
only torch knows (a CUDA device that is not there). Imports nothing heavy at module level.
"""
from __future__ import annotations

import argparse
import re

from minimonkey_eval.errors import UserFacingError

DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "fp32": "float32", "float32": "float32"}
DTYPE_CHOICES = ("bf16", "fp16", "fp32")
ATTN_CHOICES = ("sdpa", "eager", "flash_attention_2")
_DEVICE_RE = re.compile(r"^(cpu|cuda|cuda:\d{1,3})$")


class OptionError(UserFacingError):
    """An option value the engine cannot use (one line)."""


def dtype_name(text: str) -> str:
    """``--dtype``: bf16 | fp16 | fp32 (and the torch spellings) -> the torch dtype's name."""
    key = str(text).strip().lower()
    if key not in DTYPES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a supported dtype; choose one of {', '.join(DTYPE_CHOICES)}")
    return DTYPES[key]


def device_name(text: str) -> str:
    """``--device``: cpu | cuda | cuda:N."""
    key = str(text).strip().lower()
    if not _DEVICE_RE.match(key):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda or cuda:N")
    return key


def check_device(device) -> None:
    """A CUDA device that torch cannot see is one line, not a CUDA traceback at the first tensor."""
    text = str(device)
    if not text.startswith("cuda"):
        if text not in ("cpu", "meta") and not _DEVICE_RE.match(text):
            raise OptionError(f"--device {text!r}: use cpu, cuda or cuda:N")
        return
    import torch

    if not torch.cuda.is_available():
        raise OptionError(f"--device {text}: no CUDA device is available here (use --device cpu)")
    index = int(text.split(":", 1)[1]) if ":" in text else 0
    if index >= torch.cuda.device_count():
        raise OptionError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) are visible")


def resolve_dtype(dtype, device) -> str:
    """The dtype a run will use, as a torch dtype name (``None`` -> bf16 on CUDA, fp32 elsewhere)."""
    if dtype is None:
        return "bfloat16" if str(device).startswith("cuda") else "float32"
    text = str(dtype).replace("torch.", "")
    if text not in DTYPES:
        raise OptionError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPE_CHOICES)}")
    return DTYPES[text]
