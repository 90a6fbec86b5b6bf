"""Names that become folder and file names (run folders, registered models): the one pattern they must match.

A run name is a folder under ``--work-dir`` and a model name becomes a default run name, so both are limited to
letters, digits and ``._+=-`` (never ``.`` or ``..``). :func:`safe_name` turns any text (a VLMEvalKit model name) into
such a name. Pure stdlib.
"""
from __future__ import annotations

import re

NAME_CHARS = "A-Za-z0-9._+=-"          # the characters a run or model name may hold (a regex character class body)
_NAME = re.compile(f"[{NAME_CHARS}]+")
_OTHER = re.compile(f"[^{NAME_CHARS}]+")
NAME_RULE = "use letters, digits and ._+=- only"


def is_valid_name(text) -> bool:
    """Whether ``text`` can be a run-folder name."""
    return isinstance(text, str) and bool(_NAME.fullmatch(text)) and text not in (".", "..")


def safe_name(text: str, replacement: str = "-") -> str:
    """``text`` with every run of other characters replaced (``'org/model 1'`` -> ``'org-model-1'``)."""
    return _OTHER.sub(replacement, text)
