"""InternLM2 tokenizer built from the checkpoint's ``tokenizer.model`` with sentencepiece, no remote code.

transformers has no InternLM2 tokenizer, so this small class reproduces what the official slow
``InternLM2Tokenizer`` (transformers 4.37-4.40, the versions Mini-Monkey was released with) does on our prompts:

* encode: the text is split on the added tokens (``tokenizer_config.json`` ``added_tokens_decoder`` and
  ``added_tokens.json``: ``<s>``, ``<|im_start|>``, ``<|im_end|>``, ``<img>``, ``<IMG_CONTEXT>`` ...); each plain
  chunk is encoded by the sentencepiece model; BOS is prepended (``add_bos_token``);
* decode with ``skip_special_tokens=True``: every special/added token is dropped, the remaining pieces are decoded
  by sentencepiece, then transformers 4.37's ``clean_up_tokenization`` replacements run (the official
  ``convert_tokens_to_string`` calls it unconditionally), and the official prefix-space step
  (``' ' + s`` then ``[1:]``) is a no-op, so no stray leading space appears.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import sentencepiece as spm

from ..errors import UserFacingError

# The tokens InternVL adds after the sentencepiece vocabulary, in this order (ids 92544..92552 for InternLM2).
INTERNVL_ADDED_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>")
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"


class TokenizerError(UserFacingError):
    """A tokenizer file is missing or does not match what the model needs."""


def _clean_up_tokenization(text: str) -> str:
    """transformers 4.37 ``PreTrainedTokenizerBase.clean_up_tokenization``."""
    for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                     (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(old, new)
    return text


class InternLM2Tokenizer:
    """Encode/decode like the official InternLM2Tokenizer (slow, sentencepiece BPE)."""

    def __init__(self, sp_model: spm.SentencePieceProcessor, added_tokens: dict[str, int], special_ids: set[int],
                 add_bos_token: bool = True, path: str = ""):
        self.sp_model = sp_model
        self.added_tokens = dict(added_tokens)
        self.path = path
        self.add_bos_token = add_bos_token
        self.bos_token_id = sp_model.bos_id()
        self.eos_token_id = sp_model.eos_id()
        self.unk_token_id = sp_model.unk_id()
        self.special_ids = set(special_ids) | {i for i in (self.bos_token_id, self.eos_token_id, self.unk_token_id) if i >= 0}
        self._id_to_added = {i: t for t, i in self.added_tokens.items()}
        # Longest first, so that no added token is split by a shorter one.
        alternatives = sorted(self.added_tokens, key=len, reverse=True)
        self._split_re = re.compile("(" + "|".join(re.escape(t) for t in alternatives) + ")") if alternatives else None

    # ---- loading -------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path) -> "InternLM2Tokenizer":
        path = Path(path)
        model_file = path / "tokenizer.model"
        if not model_file.is_file():
            raise TokenizerError(f"{model_file}: missing; the checkpoint needs the sentencepiece tokenizer.model "
                                 "that ships with it")
        sp_model = spm.SentencePieceProcessor()
        try:
            sp_model.Load(str(model_file))
        except Exception as exc:  # sentencepiece raises a bare RuntimeError/OSError
            raise TokenizerError(f"{model_file}: not a sentencepiece model ({exc})") from None
        added: dict[str, int] = {}
        special: set[int] = set()
        add_bos = True
        config_file = path / "tokenizer_config.json"
        if config_file.is_file():
            config = _read_json(config_file)
            add_bos = bool(config.get("add_bos_token", True))
            for idx, entry in (config.get("added_tokens_decoder") or {}).items():
                content = entry["content"] if isinstance(entry, dict) else str(entry)
                added[content] = int(idx)
                if not isinstance(entry, dict) or entry.get("special", True):
                    special.add(int(idx))
        added_file = path / "added_tokens.json"
        if added_file.is_file():
            for content, idx in _read_json(added_file).items():
                added.setdefault(content, int(idx))
                special.add(int(idx))  # InternVL adds them with special_tokens=True
        # Tokens named in special_tokens_map.json are special too.
        map_file = path / "special_tokens_map.json"
        if map_file.is_file():
            for value in _read_json(map_file).values():
                for item in value if isinstance(value, list) else [value]:
                    content = item["content"] if isinstance(item, dict) else item
                    if content in added:
                        special.add(added[content])
                    elif sp_model.PieceToId(content) != sp_model.unk_id():
                        added.setdefault(content, sp_model.PieceToId(content))
                        special.add(sp_model.PieceToId(content))
        tok = cls(sp_model, added, special, add_bos_token=add_bos, path=str(path))
        missing = [t for t in (*INTERNVL_ADDED_TOKENS[:3], "<|im_start|>", "<|im_end|>") if t not in tok.added_tokens]
        if missing:
            raise TokenizerError(f"{path}: tokenizer lacks {', '.join(missing)}; expected them in "
                                 "tokenizer_config.json added_tokens_decoder / added_tokens.json (InternVL checkpoint format)")
        return tok

    # ---- vocabulary ----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return max(self.sp_model.GetPieceSize(), max(self.added_tokens.values(), default=-1) + 1)

    def convert_tokens_to_ids(self, token: str) -> int:
        if token in self.added_tokens:
            return self.added_tokens[token]
        return self.sp_model.PieceToId(token)

    # ---- encode / decode -----------------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids: list[int] = [self.bos_token_id] if (add_special_tokens and self.add_bos_token) else []
        chunks = self._split_re.split(text) if self._split_re else [text]
        for chunk in chunks:
            if not chunk:
                continue
            if chunk in self.added_tokens:
                ids.append(self.added_tokens[chunk])
            else:
                ids.extend(self.sp_model.EncodeAsIds(chunk))
        return ids

    def __call__(self, text: str) -> list[int]:
        return self.encode(text)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Decode like the official tokenizer's ``decode(ids, skip_special_tokens=True)``."""
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            pieces = [i for i in ids if i not in self.special_ids and i not in self._id_to_added]
            text = self._decode_pieces(pieces)
        else:
            parts, pending = [], []
            for i in ids:
                if i in self._id_to_added or i in self.special_ids:
                    if pending:
                        parts.append(self._decode_pieces(pending))
                        pending = []
                    parts.append(self._id_to_added.get(i) or self.sp_model.IdToPiece(i))
                else:
                    pending.append(i)
            if pending:
                parts.append(self._decode_pieces(pending))
            text = "".join(parts)
        return text

    def batch_decode(self, sequences, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(seq, skip_special_tokens=skip_special_tokens) for seq in sequences]

    def _decode_pieces(self, ids: list[int]) -> str:
        vocab = self.sp_model.GetPieceSize()
        text = self.sp_model.DecodeIds([i for i in ids if 0 <= i < vocab])
        return _clean_up_tokenization(text)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"{path}: unreadable JSON ({exc})") from None
