"""Typed readers of a checkpoint's JSON side files: the tokenizer's ``tokenizer_config.json``, ``added_tokens.json``
and ``special_tokens_map.json``, and the shard index ``model.safetensors.index.json``.

Each file is read once, through a pydantic model that states the shape the loader relies on (unknown keys are kept
and ignored); any other shape -- invalid JSON, a list where an object belongs, a token id that is not a
non-negative integer -- is one :class:`~minimonkey_eval.errors.CheckpointError` line naming the file and the field.
``config.json`` has its own checker (``config_check.py``: it also checks the values against each other).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, StrictInt, StrictStr, ValidationError

from minimonkey_eval.errors import CheckpointError

TokenId = StrictInt


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class AddedToken(_Open):
    """An ``AddedToken`` as transformers serialises it (``content`` + flags)."""

    content: StrictStr
    special: StrictBool = True


SpecialValue = Optional[Union[StrictStr, AddedToken, list[Union[StrictStr, AddedToken]]]]
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token",
                "additional_special_tokens")


def special_contents(values) -> list[str]:
    """Token texts named by special-token values (a string, an AddedToken, a list of them, or None)."""
    out = []
    for value in values:
        for item in value if isinstance(value, list) else ([] if value is None else [value]):
            out.append(item.content if isinstance(item, AddedToken) else item)
    return [x for x in out if x]


class TokenizerConfig(_Open):
    add_bos_token: StrictBool = True
    added_tokens_decoder: dict[StrictStr, Union[AddedToken, StrictStr]] = Field(default_factory=dict)
    legacy: Optional[StrictBool] = None
    add_prefix_space: Optional[StrictBool] = None
    clean_up_tokenization_spaces: Optional[StrictBool] = None
    bos_token: SpecialValue = None
    eos_token: SpecialValue = None
    unk_token: SpecialValue = None
    pad_token: SpecialValue = None
    sep_token: SpecialValue = None
    cls_token: SpecialValue = None
    mask_token: SpecialValue = None
    additional_special_tokens: SpecialValue = None

    def special(self) -> list[str]:
        return special_contents(getattr(self, key) for key in SPECIAL_KEYS)

    def added(self) -> dict[int, AddedToken]:
        """``added_tokens_decoder`` with integer ids (a bare string entry is a special token)."""
        out = {}
        for key, entry in self.added_tokens_decoder.items():
            out[_token_id(key)] = entry if isinstance(entry, AddedToken) else AddedToken(content=entry)
        return out


class AddedTokens(RootModel[dict[StrictStr, TokenId]]):
    pass


class SpecialTokensMap(RootModel[dict[StrictStr, SpecialValue]]):
    def contents(self) -> list[str]:
        """Every token text the map names."""
        return special_contents(self.root.values())

    def special(self) -> list[str]:
        """The texts under the keys a slow tokenizer counts as ``all_special_tokens``."""
        return special_contents(self.root.get(key) for key in SPECIAL_KEYS)


@dataclass
class TokenizerSideFiles:
    """The three side files of a tokenizer folder, each read once (an absent file is its empty default)."""

    config: TokenizerConfig
    added: dict[str, int]
    special_map: SpecialTokensMap

    @classmethod
    def read(cls, folder: str | Path, error: type[Exception] = CheckpointError) -> "TokenizerSideFiles":
        folder = Path(folder)

        def one(name, model, default):
            return read_side_file(folder / name, model, error) if (folder / name).is_file() else default

        return cls(one("tokenizer_config.json", TokenizerConfig, TokenizerConfig()),
                   one("added_tokens.json", AddedTokens, AddedTokens({})).root,
                   one("special_tokens_map.json", SpecialTokensMap, SpecialTokensMap({})))

    def special_strings(self) -> set[str]:
        """The slow tokenizer's ``all_special_tokens`` texts (config and map)."""
        return set(self.config.special()) | set(self.special_map.special())

    def added_strings(self) -> set[str]:
        return {t.content for t in self.config.added().values()} | set(self.added)


class ShardIndex(_Open):
    weight_map: dict[StrictStr, StrictStr]
    metadata: Optional[dict] = None


class _BadId(ValueError):
    pass


def _token_id(key: str) -> int:
    if not key.isdigit():
        raise _BadId(f"token id {key!r} is not a non-negative integer")
    return int(key)


def _field(loc) -> str:
    """A pydantic error location as one printable line (odd keys quoted with escapes)."""
    parts = [str(part) if str(part).isidentifier() or isinstance(part, int) else ascii(str(part)) for part in loc]
    return ".".join(parts) or "(top level)"


HF_SHAPE = "the file does not have the shape a Hugging Face checkpoint has"


def read_side_file(path: str | Path, model: type[BaseModel], error: type[Exception] = CheckpointError,
                   fix: str = HF_SHAPE):
    """``path`` parsed and validated as ``model``; any problem is one ``error`` line naming the file and field
    (``fix``: what the line ends with after a field of the wrong shape). The one typed reader of JSON side files:
    the checkpoint's here, the sweep's ``sweep.json`` (``eval/sweep/state.py``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        restore = "restore the file from the checkpoint's source" if fix == HF_SHAPE else fix
        raise error(f"{path}: not UTF-8 text; {restore}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        tail = "" if fix == HF_SHAPE else f"; {fix}"
        raise error(f"{path}: invalid JSON ({' '.join(str(exc).split())[:160]}){tail}") from None
    try:
        value = model.model_validate(data)
        if isinstance(value, TokenizerConfig):
            value.added()   # ids are checked here, once
        if isinstance(value, AddedTokens) and any(i < 0 for i in value.root.values()):
            raise _BadId("a token id is negative")
    except ValidationError as exc:
        first = exc.errors()[0]
        raise error(f"{path}: field {_field(first['loc'])}: {first['msg']} (got {_short(first.get('input'))}); "
                    f"{fix}") from None
    except _BadId as exc:
        raise error(f"{path}: {exc}") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply") from None
    return value


def _short(value) -> str:
    text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "..."
