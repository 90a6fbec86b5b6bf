"""Tokenizers for the InternVL2 family, behind one small interface, built from the checkpoint's files (no remote code).

The engine needs only ``encode(text, add_special_tokens=True)``, ``decode(ids, skip_special_tokens=True)``,
``batch_decode``, ``convert_tokens_to_ids``, ``len()``, ``bos_token_id`` / ``eos_token_id`` and ``path``.
:func:`load_tokenizer` picks the implementation from ``llm_config.architectures[0]``:

* ``InternLM2ForCausalLM`` (Mini-Monkey, InternVL2-2B): :class:`InternLM2Tokenizer`, below; transformers has no
  InternLM2 tokenizer, so this small sentencepiece class reproduces the official slow one;
* ``Qwen2ForCausalLM`` (Mini-InternVL2-1B): transformers' native ``Qwen2Tokenizer`` from ``vocab.json`` +
  ``merges.txt`` (byte-level BPE; no BOS is added, as with the official slow tokenizer);
* ``Phi3ForCausalLM`` (Mini-InternVL2-4B): transformers' native ``LlamaTokenizer`` from ``tokenizer.model``
  (``legacy``, ``add_bos_token`` and each added token's ``rstrip``/``lstrip`` come from ``tokenizer_config.json``,
  as the official slow tokenizer reads them; Phi-3's added tokens strip the whitespace on their right).

Both native ones are wrapped in :class:`NativeTokenizer`, which reproduces the official *slow* tokenizers
(``use_fast=False`` in InternVL's ``chat()`` examples and VLMEvalKit, transformers 4.37) where the native ones differ:
the lone ``'\u2581'`` the slow Llama tokenizer puts before a prompt that starts with ``<|system|>``
(:func:`_slow_llama_prefix`), and ``decode(skip_special_tokens=True)`` (only ``all_special_tokens`` skipped,
sentencepiece decoding of byte-fallback runs). Checked against transformers 4.37.2's slow ``Qwen2Tokenizer`` and
``LlamaTokenizer`` on the tiny fixtures: identical ids on the chat prompts and identical decodes of 400 random id
sequences each. Known remaining difference: a Llama text that *starts* with a space (never a chat prompt). The
InternLM2 tokenizer, in detail, does what the official slow ``InternLM2Tokenizer`` (transformers 4.37-4.40, the
versions Mini-Monkey was released with) does on our prompts:

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
import threading
from pathlib import Path

import sentencepiece as spm

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.models.side_files import TokenizerSideFiles

# The tokens InternVL adds after the sentencepiece vocabulary, in this order (ids 92544..92552 for InternLM2).
INTERNVL_ADDED_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>")
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"


_HF_ENCODE_LOCK = threading.Lock()   # module level: keeps NativeTokenizer picklable

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
        self.special_ids = set(special_ids) | {i for i in (self.bos_token_id, self.eos_token_id, self.unk_token_id)
                                               if i >= 0}
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
        files = TokenizerSideFiles.read(path, TokenizerError)
        added: dict[str, int] = {}
        special: set[int] = set()
        for idx, entry in files.config.added().items():
            added[entry.content] = idx
            if entry.special:
                special.add(idx)
        for content, idx in files.added.items():
            added.setdefault(content, idx)
            special.add(idx)  # InternVL adds them with special_tokens=True
        # Tokens named in special_tokens_map.json are special too.
        for content in files.special_map.contents():
            if content in added:
                special.add(added[content])
            elif sp_model.PieceToId(content) != sp_model.unk_id():
                added.setdefault(content, sp_model.PieceToId(content))
                special.add(sp_model.PieceToId(content))
        add_bos = files.config.add_bos_token
        tok = cls(sp_model, added, special, add_bos_token=add_bos, path=str(path))
        missing = [t for t in (*INTERNVL_ADDED_TOKENS[:3], "<|im_start|>", "<|im_end|>") if t not in tok.added_tokens]
        if missing:
            raise TokenizerError(f"{path}: tokenizer lacks {', '.join(missing)}; expected them in "
                                 "tokenizer_config.json added_tokens_decoder / added_tokens.json "
                                 "(InternVL checkpoint format)")
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


class NativeTokenizer:
    """A transformers tokenizer (Qwen2 byte-level BPE or Llama sentencepiece BPE) behind the engine's interface."""

    def __init__(self, hf_tokenizer, path: str = "", kind: str = "", source: str = ""):
        self.hf = hf_tokenizer
        self.path = str(path)
        self.kind = kind
        self.source = source            # the main vocabulary file, for error messages
        self._vocab: dict[str, int] | None = None
        self.lone_prefix_id: int | None = None          # see _slow_llama_prefix
        self.lone_prefix_before: tuple[str, ...] = ()
        self.decoding: tuple | None = None              # (skip ids, {id: text} of kept added tokens, join, clean up)
        self.sp_model = None                            # Llama: sentencepiece for decoding, as the slow tokenizer

    @property
    def bos_token_id(self) -> int | None:
        """The BOS that ``encode`` prepends, or None (Qwen2 has none)."""
        return self.hf.bos_token_id if getattr(self.hf, "add_bos_token", False) else None

    @property
    def eos_token_id(self) -> int | None:
        return self.hf.eos_token_id

    def __len__(self) -> int:
        return len(self.hf)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        """The id of ``token`` (a whole vocabulary entry or added token), None if there is none."""
        if self._vocab is None:
            self._vocab = self.hf.get_vocab()
        return self._vocab.get(token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        with _HF_ENCODE_LOCK:   # a fast tokenizer may raise "Already borrowed" when two threads encode at once
            ids = list(self.hf.encode(text, add_special_tokens=add_special_tokens))
        if self.lone_prefix_id is not None and text.startswith(self.lone_prefix_before):
            # slow LlamaTokenizer (legacy=False) quirk, see ``_slow_llama_prefix``
            at = 1 if ids and add_special_tokens and ids[0] == self.bos_token_id else 0
            ids.insert(at, self.lone_prefix_id)
        return ids

    def __call__(self, text: str) -> list[int]:
        return self.encode(text)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Decode like the official *slow* tokenizer (transformers 4.37 ``PreTrainedTokenizer._decode``), which
        InternVL's ``chat()`` and VLMEvalKit use (``use_fast=False``):

        * ``skip_special_tokens`` drops only ``all_special_ids`` (bos/eos/unk/pad/``additional_special_tokens``);
          other added tokens (``<img>``, Phi-3's ``<|end|>``, ...) stay in the text, Llama joins them to the
          surrounding text with spaces (``spaces_between_special_tokens``), Qwen2 without;
        * each run of ordinary ids is decoded on its own: Qwen2 byte-level (lossy UTF-8, as the slow one), Llama
          with sentencepiece (``add_dummy_prefix`` off, the first piece's ``'\u2581'`` removed), which turns each
          invalid byte-fallback byte into U+FFFD on its own, unlike the fast ByteFallback decoder.
        """
        ids = [int(i) for i in ids]
        if not skip_special_tokens or self.decoding is None:
            return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)
        skip, as_text, join, clean = self.decoding
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            if i in skip:
                continue
            if i in as_text:
                if run:
                    parts.append(self._decode_run(run))
                    run = []
                parts.append(as_text[i])
            else:
                run.append(i)
        if run:
            parts.append(self._decode_run(run))
        text = join.join(parts)
        return _clean_up_tokenization(text) if clean else text

    def _decode_run(self, ids: list[int]) -> str:
        if self.sp_model is None:
            return self.hf.decode(ids, skip_special_tokens=False)
        size = self.sp_model.GetPieceSize()
        pieces = [self.sp_model.IdToPiece(i) for i in ids if 0 <= i < size]
        if pieces and pieces[0].startswith("\u2581"):
            pieces[0] = pieces[0][1:]
        return self.sp_model.DecodePieces(pieces)

    def batch_decode(self, sequences, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(seq, skip_special_tokens=skip_special_tokens) for seq in sequences]


# Per tokenizer kind: the transformers class name, the files it is built from (any one group suffices), and the
# tokens the family's chat template needs besides InternVL's image tokens.
_NATIVE_KINDS = {
    "qwen2": ("Qwen2Tokenizer", (("vocab.json", "merges.txt"), ("tokenizer.json",)), ("<|im_start|>", "<|im_end|>")),
    "llama": ("LlamaTokenizer", (("tokenizer.model",), ("tokenizer.json",)),
              ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")),
}
# llm_config.architectures[0] -> tokenizer kind.
TOKENIZER_FOR_ARCH = {"InternLM2ForCausalLM": "internlm2", "Qwen2ForCausalLM": "qwen2", "Phi3ForCausalLM": "llama"}


def load_native_tokenizer(path: str | Path, kind: str) -> NativeTokenizer:
    """transformers' own tokenizer class for ``kind`` ('qwen2' or 'llama') from the checkpoint folder."""
    import transformers

    path = Path(path)
    class_name, file_groups, template_tokens = _NATIVE_KINDS[kind]
    group = next((g for g in file_groups if all((path / f).is_file() for f in g)), None)
    if group is None:
        wanted = " or ".join(" + ".join(g) for g in file_groups)
        missing = next(f for f in file_groups[0] if not (path / f).is_file())
        raise TokenizerError(f"{path / missing}: missing; the {class_name} of this checkpoint needs {wanted}")
    files = TokenizerSideFiles.read(path, TokenizerError)   # their shape checked before transformers reads them
    try:
        hf = getattr(transformers, class_name).from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises many types for unreadable files
        raise TokenizerError(f"{path / group[0]}: cannot build {class_name} ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    tok = NativeTokenizer(hf, path=str(path), kind=kind, source=str(path / group[0]))
    vocab = hf.get_vocab()
    special = files.special_strings()
    added = files.added_strings()
    skip = {vocab[t] for t in special if t in vocab}
    as_text = {vocab[t]: t for t in added if t not in special and t in vocab}
    tok.decoding = (skip, as_text, " " if kind == "llama" else "", bool(files.config.clean_up_tokenization_spaces))
    if kind == "llama":
        tok.lone_prefix_id, tok.lone_prefix_before = _slow_llama_prefix(files, hf)
        if (path / "tokenizer.model").is_file():
            tok.sp_model = _sentencepiece_without_dummy_prefix(path / "tokenizer.model")
    missing = [t for t in (*INTERNVL_ADDED_TOKENS[:3], *template_tokens) if t not in vocab]
    if missing:
        raise TokenizerError(f"{path}: tokenizer lacks {', '.join(missing)}; expected them in tokenizer_config.json "
                             "added_tokens_decoder / added_tokens.json (InternVL checkpoint format)")
    return tok


def _sentencepiece_without_dummy_prefix(model_file: Path) -> spm.SentencePieceProcessor:
    """The sentencepiece model as the slow ``legacy=False`` LlamaTokenizer loads it (``add_dummy_prefix`` off)."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    proto.normalizer_spec.add_dummy_prefix = False
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def _slow_llama_prefix(files: TokenizerSideFiles, hf) -> tuple[int | None, tuple[str, ...]]:
    """The official slow ``LlamaTokenizer`` with ``legacy: false`` (transformers 4.37-4.44, ``use_fast=False`` as in
    InternVL's and VLMEvalKit's code) prepends ``'\u2581'`` to the whole text, splits on added tokens, and drops that
    lone ``'\u2581'`` only if the token after it is in ``all_special_tokens``. A prompt that starts with another
    added token (phi3-chat's ``<|system|>``, unless listed there) therefore gets a ``'\u2581'`` token right after
    BOS (id 29871 in Phi-3); the native tokenizer does not add it.

    Returns (id of ``'\u2581'``, added tokens before which it is inserted), or (None, ()) when the quirk does not apply.
    """
    config = files.config
    if config.legacy in (None, True) or config.add_prefix_space is False:
        return None, ()
    before = tuple(sorted(files.added_strings() - files.special_strings(), key=len, reverse=True))
    lone = hf.get_vocab().get("\u2581")
    return (lone, before) if lone is not None and before else (None, ())


def load_tokenizer(path: str | Path, arch: str | None = None):
    """The tokenizer of the checkpoint at ``path`` for LLM architecture ``arch`` (default: read from config.json)."""
    path = Path(path)
    if arch is None:
        config = _read_json(path / "config.json") if (path / "config.json").is_file() else {}
        arch = ((config.get("llm_config") or {}).get("architectures") or ["InternLM2ForCausalLM"])[0]
    kind = TOKENIZER_FOR_ARCH.get(arch)
    if kind is None:
        raise TokenizerError(f"{path}: no tokenizer for llm_config.architectures {arch!r}; supported: "
                             f"{', '.join(TOKENIZER_FOR_ARCH)}")
    if kind == "internlm2":
        return InternLM2Tokenizer.from_pretrained(path)
    return load_native_tokenizer(path, kind)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"{path}: unreadable JSON ({exc})") from None
