"""Write random checkpoints in the *original* InternVL2-family format (tests, demo, speed runs).

``write_checkpoint(out_dir, family='2b')`` writes one family member, each with its real config fields, original
parameter names and tokenizer type (``models.registry.fixture_models()`` names them as the runner and the report do):

* ``'2b'`` InternVL2-2B / Mini-Monkey: InternLM2 LLM (fused ``wqkv`` grouped per KV head), template
  ``internlm2-chat``, a sentencepiece BPE ``tokenizer.model`` whose last six pieces are ``[UNUSED_TOKEN_141..146]``
  (remapped to ``<|plugin|>`` ... ``<|im_end|>``, ``<|im_start|>`` by ``tokenizer_config.json``, as in InternLM2),
  followed by InternVL's nine added tokens (``added_tokens.json``);
* ``'1b'`` Mini-InternVL2-1B: Qwen2 LLM (Qwen2-0.5B-Instruct: q/k/v biases, GQA; its own untied
  ``language_model.lm_head.weight`` in the file, as the real InternVL2-1B stores it), template ``Hermes-2``, a
  byte-level BPE (``vocab.json`` + ``merges.txt``, trained with ``tokenizers`` and Qwen2's pre-tokenizer) with
  Qwen2's ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` and then InternVL's nine tokens as added tokens;
* ``'4b'`` Mini-InternVL2-4B: Phi3 LLM (Phi-3-mini-128k-instruct: fused ``qkv_proj`` / ``gate_up_proj``, ``su`` RoPE
  with short/long factors switching at 4096 tokens), template ``phi3-chat``, a Llama-style sentencepiece BPE
  ``tokenizer.model`` with Phi-3's eleven added tokens (``<|endoftext|>``, ``<|assistant|>``, ... ``<|user|>``, in
  Phi-3's order, right after the pieces) and then InternVL's nine.

Shapes:

* tiny (default): InternViT with 2 layers of width 64 at the real 448 px / 14 px patch geometry (so tiles, 256
  tokens per tile and pixel shuffle are the real ones) and an LLM of 3 layers, width 64, 4 heads (2 KV heads for
  InternLM2 and Qwen2, 4 for Phi-3, as in the real models). Matrices are N(0, 1/fan_in) (so answers depend on the
  image and the question), vectors N(0, 0.02), norms 1, layer scales 1.
* ``real_shapes=True``: the member's real sizes (InternViT-300M + internlm2-chat-1.8B / Qwen2-0.5B / Phi-3-mini,
  with the real vocabulary size), random bf16 weights, for GPU speed runs. The tokenizer stays the tiny one (its
  ids fit in the real vocabulary). The Phi-3 short/long RoPE factors are the real lists (sampled to head_dim / 2
  when tiny).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import save_file

from minimonkey_eval.models.chat_template import INTERNVL2_SYSTEM_MESSAGE
from minimonkey_eval.models.tokenizer import INTERNVL_ADDED_TOKENS

UNUSED_REMAP = ("<|plugin|>", "<|interpreter|>", "<|action_end|>", "<|action_start|>", "<|im_end|>", "<|im_start|>")

TINY_VISION = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
TINY_LLM = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=128)
REAL_VISION = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
REAL_LLM = dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8,
                intermediate_size=8192)
REAL_VOCAB = 92553
# Mini-InternVL2-1B: Qwen2-0.5B-Instruct (head_dim 64, GQA 14/2); vocab = 151643 BPE + 3 Qwen2 + 9 InternVL tokens.
TINY_QWEN2 = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128)
REAL_QWEN2 = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                  intermediate_size=4864)
REAL_QWEN2_VOCAB = 151655
# Mini-InternVL2-4B: Phi-3-mini-128k-instruct (head_dim 96, no GQA); vocab = 32000 pieces + 11 Phi-3 + 9 InternVL.
TINY_PHI3 = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                 intermediate_size=128)
REAL_PHI3 = dict(hidden_size=3072, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                 intermediate_size=8192)
REAL_PHI3_VOCAB = 32020

QWEN2_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
PHI3_SPECIAL = ("<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
                "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>")
# Words of the chat templates, so that the new tiny tokenizers have pieces for them.
_TEMPLATE_LINES = ("system\n", "user\n", "assistant\n", "\nWhat is it?")

_CORPUS_WORDS = (
    "the a an of to in is are was what which how many who where when why yes no answer question image picture "
    "photo chart table document page text title number value total year color red blue green black white left "
    "right top bottom person people man woman dog cat car bus tree house sign word letter option choose correct "
    "single phrase directly given choices please following shown figure graph percent price date name city "
    "there this that these those with from for and or not than more less most least first second third hint "
    "OCR read write small large scene math solve equation area length angle"
).split()
_CORPUS_EXTRA = (
    INTERNVL2_SYSTEM_MESSAGE,
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
    "请直接回答选项字母。请直接回答问题。这是什么？图中有几个人？",
    "A. B. C. D. E. 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.5 % $ ( ) , : ; ? ! ' \" - + = / *",
)


def _corpus(seed: int) -> list[str]:
    gen = torch.Generator().manual_seed(seed)
    lines = list(_CORPUS_EXTRA) * 20
    for _ in range(3000):
        n = int(torch.randint(3, 14, (1,), generator=gen))
        idx = torch.randint(0, len(_CORPUS_WORDS), (n,), generator=gen).tolist()
        lines.append(" ".join(_CORPUS_WORDS[i] for i in idx) + ("?" if n % 2 else "."))
    return lines


def train_tokenizer(out_dir: Path, vocab_size: int = 1000, seed: int = 0) -> int:
    """Train a small BPE sentencepiece model, append the six InternLM2 remapped pieces, write the tokenizer files.

    Returns the total vocabulary (sentencepiece pieces + InternVL's nine added tokens).
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(seed)), model_writer=buffer, vocab_size=vocab_size - len(UNUSED_REMAP),
        model_type="bpe", character_coverage=1.0, byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        minloglevel=2,
    )
    proto = model_pb2.ModelProto()
    proto.ParseFromString(buffer.getvalue())
    for k in range(len(UNUSED_REMAP)):
        piece = proto.pieces.add()
        piece.piece = f"[UNUSED_TOKEN_{141 + k}]"
        piece.score = 0.0
        piece.type = model_pb2.ModelProto.SentencePiece.USER_DEFINED
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(proto.SerializeToString())
    n_pieces = len(proto.pieces)

    def entry(content: str) -> dict:
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                "special": True}

    decoder = {"0": entry("<unk>"), "1": entry("<s>"), "2": entry("</s>")}
    first_unused = n_pieces - len(UNUSED_REMAP)
    for k, content in enumerate(UNUSED_REMAP):
        decoder[str(first_unused + k)] = entry(content)
    added = {content: n_pieces + k for k, content in enumerate(INTERNVL_ADDED_TOKENS)}
    for content, idx in added.items():
        decoder[str(idx)] = entry(content)
    tokenizer_config = {
        "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": list(UNUSED_REMAP), "auto_map": {
            "AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "bos_token": "<s>", "clean_up_tokenization_spaces": False, "eos_token": "</s>",
        "model_max_length": 8192, "pad_token": "</s>", "tokenizer_class": "InternLM2Tokenizer", "unk_token": "<unk>",
    }
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config)
    _write_json(out_dir / "added_tokens.json", added)
    _write_json(out_dir / "special_tokens_map.json", {
        "additional_special_tokens": list(UNUSED_REMAP), "bos_token": "<s>", "eos_token": "</s>",
        "pad_token": "</s>", "unk_token": "<unk>"})
    return n_pieces + len(INTERNVL_ADDED_TOKENS)


def _added_entry(content: str, special: bool = True, rstrip: bool = False) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": rstrip, "single_word": False,
            "special": special}


def train_qwen2_tokenizer(out_dir: Path, vocab_size: int = 1000, seed: int = 0) -> int:
    """A tiny Qwen2-style byte-level BPE: ``vocab.json`` + ``merges.txt`` (trained with ``tokenizers`` under Qwen2's
    NFC normalizer and pre-tokenizer), Qwen2's three special tokens and InternVL's nine as added tokens after the
    vocabulary (``tokenizer_config.json`` ``added_tokens_decoder``, ``added_tokens.json``), as the slow Qwen2Tokenizer
    saves them. Returns the total vocabulary."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(QWEN2_SPECIAL) - len(INTERNVL_ADDED_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(_TEMPLATE_LINES) * 20 + _corpus(seed), trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(out_dir))                      # vocab.json, merges.txt ("#version: 0.2" header)
    n = tok.get_vocab_size()
    added = {content: n + k for k, content in enumerate(QWEN2_SPECIAL + INTERNVL_ADDED_TOKENS)}
    _write_json(out_dir / "tokenizer_config.json", {
        "add_prefix_space": False, "added_tokens_decoder": {str(i): _added_entry(c) for c, i in added.items()},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "bos_token": None,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 32768, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None})
    _write_json(out_dir / "added_tokens.json", added)
    _write_json(out_dir / "special_tokens_map.json", {
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>"})
    return n + len(added)


def train_phi3_tokenizer(out_dir: Path, vocab_size: int = 1000, seed: int = 0) -> int:
    """A tiny Phi-3 (Llama-2 style) sentencepiece BPE ``tokenizer.model`` (byte fallback, split digits, dummy prefix),
    Phi-3's eleven added tokens right after the pieces in Phi-3's order (ids 32000-32010 in the real one; all but
    ``<|endoftext|>`` strip the whitespace on their right), then InternVL's nine; ``add_bos_token`` true and
    ``legacy`` false as in Phi-3-mini's ``tokenizer_config.json``. Returns the total vocabulary."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(_TEMPLATE_LINES) * 20 + _corpus(seed)), model_writer=buffer,
        vocab_size=vocab_size - len(PHI3_SPECIAL) - len(INTERNVL_ADDED_TOKENS), model_type="bpe",
        character_coverage=1.0, byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(buffer.getvalue())
    n = spm.SentencePieceProcessor(model_proto=buffer.getvalue()).GetPieceSize()
    decoder = {"0": _added_entry("<unk>"), "1": _added_entry("<s>"),
               "2": _added_entry("</s>", special=False, rstrip=True)}
    added = {content: n + k for k, content in enumerate(PHI3_SPECIAL + INTERNVL_ADDED_TOKENS)}
    for content, idx in added.items():
        decoder[str(idx)] = _added_entry(content, rstrip=content in PHI3_SPECIAL and content != "<|endoftext|>")
    _write_json(out_dir / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": decoder, "bos_token": "<s>",
        "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>", "legacy": False,
        "model_max_length": 131072, "pad_token": "<|endoftext|>", "padding_side": "left", "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>", "use_default_system_prompt": False})
    _write_json(out_dir / "added_tokens.json", added)
    _write_json(out_dir / "special_tokens_map.json", {
        "bos_token": "<s>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<unk>"})
    return n + len(added)


# Phi-3-mini-128k-instruct's ``su`` factor lists (48 each, head_dim 96), as InternVL2-4B carries them
# (shared/design/real-configs.md, source S5; rounded to 4 decimals).
PHI3_LONG_FACTOR = (
    1.03, 1.05, 1.05, 1.08, 1.23, 1.23, 1.3, 1.45, 1.6, 1.65, 1.9, 2.86, 3.69, 5.42, 5.49, 5.49, 9.09, 11.58, 15.66,
    15.77, 15.79, 18.36, 21.99, 23.08, 30.01, 32.35, 32.59, 35.56, 39.95, 53.84, 56.2, 57.95, 59.29, 59.77, 59.92,
    61.19, 61.96, 62.5, 63.37, 63.48, 63.48, 63.66, 63.85, 64.08, 64.76, 64.8, 64.81, 64.81,
)
PHI3_SHORT_FACTOR = (
    1.05, 1.05, 1.05, 1.1, 1.1, 1.1, 1.25, 1.25, 1.4, 1.45, 1.55, 1.85, 1.9, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0,
    2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.1, 2.1, 2.2, 2.35, 2.35, 2.35, 2.35, 2.4, 2.4, 2.65,
    2.7, 2.9, 2.95, 3.05, 3.05, 3.05,
)


def _phi3_rope_factors(head_dim: int) -> dict:
    """``su`` factors of length head_dim / 2 with the real magnitudes: the real 48-entry lists for head_dim 96,
    else evenly spaced entries of them (long 1.03 .. 64.81, short 1.05 .. 3.05)."""
    half = head_dim // 2
    n = len(PHI3_LONG_FACTOR)
    pick = [round(k * (n - 1) / max(1, half - 1)) for k in range(half)] if half != n else list(range(n))
    return {"long_factor": [PHI3_LONG_FACTOR[i] for i in pick], "short_factor": [PHI3_SHORT_FACTOR[i] for i in pick],
            "type": "su"}


def qwen2_llm_config(llm: dict, vocab_size: int, first_added: int = 151643) -> dict:
    """``llm_config`` of Mini-InternVL2-1B: Qwen2-0.5B-Instruct's config.json fields. Qwen2-0.5B ties its embeddings,
    but InternVL2-1B stores its own ``lm_head`` (938M parameters) and says false, as the fixture does.

    ``first_added`` is the id of ``<|endoftext|>`` (151643 in Qwen2; bos = it, eos = ``<|im_end|>`` = it + 2)."""
    layers = llm["num_hidden_layers"]
    return {
        "_name_or_path": "Qwen/Qwen2-0.5B-Instruct", "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "attention_dropout": 0.0, "bos_token_id": first_added, "eos_token_id": first_added + 2, "hidden_act": "silu",
        "initializer_range": 0.02, "max_position_embeddings": 32768, "max_window_layers": layers,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False, "vocab_size": vocab_size, **llm,
    }


def phi3_llm_config(llm: dict, vocab_size: int, first_added: int = 32000) -> dict:
    """``llm_config`` of Mini-InternVL2-4B: Phi-3-mini-128k-instruct's config.json fields (``su`` RoPE).

    ``first_added`` is the id of ``<|endoftext|>`` (32000 in Phi-3: eos and pad; also the embedding's padding_idx)."""
    return {
        "_name_or_path": "microsoft/Phi-3-mini-128k-instruct", "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "auto_map": {"AutoConfig": "configuration_phi3.Phi3Config",
                     "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM"},
        "attention_dropout": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": first_added,
        "hidden_act": "silu",
        "initializer_range": 0.02, "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
        "pad_token_id": first_added, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05,
        "rope_scaling": _phi3_rope_factors(llm["hidden_size"] // llm["num_attention_heads"]), "rope_theta": 10000.0,
        "sliding_window": 262144, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "vocab_size": vocab_size, **llm,
    }


def internlm2_llm_config(llm: dict, vocab_size: int, first_added: int = 0) -> dict:
    """``llm_config`` of InternVL2-2B / Mini-Monkey: internlm2-chat-1_8b's fields."""
    return {
        "architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2",
        "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                     "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                     "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
        "attn_implementation": "flash_attention_2", "bias": False, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "initializer_range": 0.02, "max_position_embeddings": 32768, "pad_token_id": 2,
        "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 2.0, "type": "dynamic"}, "rope_theta": 1000000,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": vocab_size, **llm,
    }


@dataclass(frozen=True)
class FamilyMember:
    """What differs between the family's checkpoints: the LLM (shapes, config, tokenizer) and the template."""

    key: str
    template: str
    tiny_llm: dict
    real_llm: dict
    real_vocab: int
    llm_config: Callable[..., dict]             # (llm shapes, vocab_size, first_added) -> llm_config
    train_tokenizer: Callable[..., int]
    n_added: int = 0                            # the LLM's own added tokens before InternVL's (first one: first_added)


MEMBERS = {m.key: m for m in (
    FamilyMember("1b", "Hermes-2", TINY_QWEN2, REAL_QWEN2, REAL_QWEN2_VOCAB, qwen2_llm_config,
                 train_qwen2_tokenizer, len(QWEN2_SPECIAL)),
    FamilyMember("2b", "internlm2-chat", TINY_LLM, REAL_LLM, REAL_VOCAB, internlm2_llm_config,
                 train_tokenizer),
    FamilyMember("4b", "phi3-chat", TINY_PHI3, REAL_PHI3, REAL_PHI3_VOCAB, phi3_llm_config,
                 train_phi3_tokenizer, len(PHI3_SPECIAL)),
)}


def original_config(vision: dict, llm: dict, vocab_size: int, max_dynamic_patch: int = 12, family: str = "2b",
                    first_added: int | None = None) -> dict:
    """config.json in InternVLChatConfig format, with the fields of the published family member's checkpoint.

    ``first_added``: id of the LLM's first added token (default: where it is in the real vocabulary)."""
    member = MEMBERS[family]
    if first_added is None:
        first_added = vocab_size - member.n_added - len(INTERNVL_ADDED_TOKENS)
    vision_config = {
        "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "attention_dropout": 0.0,
        "drop_path_rate": 0.0, "dropout": 0.0, "hidden_act": "gelu", "image_size": 448, "initializer_factor": 1.0,
        "initializer_range": 0.02, "layer_norm_eps": 1e-06, "norm_type": "layer_norm", "num_channels": 3,
        "patch_size": 14, "qk_normalization": False, "qkv_bias": True, "use_flash_attn": True,
        "torch_dtype": "bfloat16", **vision,
    }
    return {
        "_commit_hash": None, "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                     "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": 448,
        "llm_config": member.llm_config(llm, vocab_size, first_added),
        "max_dynamic_patch": max_dynamic_patch, "min_dynamic_patch": 1, "model_type": "internvl_chat",
        "ps_version": "v2", "select_layer": -1, "template": member.template, "torch_dtype": "bfloat16",
        "use_backbone_lora": 0, "use_llm_lora": 0, "use_thumbnail": True, "pad2square": False,
        "vision_config": vision_config,
    }


def original_state_dict(config: dict, seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Random tensors with the original names and layouts for ``config`` (its ``llm_config.architectures``)."""
    gen = torch.Generator().manual_seed(seed)
    v, t = config["vision_config"], config["llm_config"]
    V, I_v, P = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    n_pos = (v["image_size"] // P) ** 2 + 1
    D, F, H, Hkv = t["hidden_size"], t["intermediate_size"], t["num_attention_heads"], t["num_key_value_heads"]
    d = D // H
    vocab = t["vocab_size"]
    arch = t["architectures"][0]

    def normal(*shape: int) -> torch.Tensor:
        # std 1/sqrt(fan_in) for matrices so that a tiny random model's answers depend on the image and the question
        std = 0.02 if len(shape) == 1 or shape[0] == 1 else shape[-1] ** -0.5 if len(shape) == 2 else 0.02
        return (torch.randn(*shape, generator=gen) * std).to(dtype)

    def ones(n: int) -> torch.Tensor:
        return torch.ones(n, dtype=dtype)

    def zeros(n: int) -> torch.Tensor:
        return torch.zeros(n, dtype=dtype)

    sd: dict[str, torch.Tensor] = {
        "vision_model.embeddings.class_embedding": normal(1, 1, V),
        "vision_model.embeddings.patch_embedding.weight": normal(V, 3, P, P),
        "vision_model.embeddings.patch_embedding.bias": normal(V),
        "vision_model.embeddings.position_embedding": normal(1, n_pos, V),
    }
    for n in range(v["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{n}."
        sd.update({
            p + "attn.qkv.weight": normal(3 * V, V), p + "attn.qkv.bias": normal(3 * V),
            p + "attn.proj.weight": normal(V, V), p + "attn.proj.bias": normal(V),
            p + "ls1": ones(V), p + "ls2": ones(V),
            p + "norm1.weight": ones(V), p + "norm1.bias": zeros(V),
            p + "norm2.weight": ones(V), p + "norm2.bias": zeros(V),
            p + "mlp.fc1.weight": normal(I_v, V), p + "mlp.fc1.bias": normal(I_v),
            p + "mlp.fc2.weight": normal(V, I_v), p + "mlp.fc2.bias": normal(V),
        })
    sd.update({
        "mlp1.0.weight": ones(4 * V), "mlp1.0.bias": zeros(4 * V),
        "mlp1.1.weight": normal(D, 4 * V), "mlp1.1.bias": normal(D),
        "mlp1.3.weight": normal(D, D), "mlp1.3.bias": normal(D),
    })
    embed_name = "language_model.model.tok_embeddings.weight" if arch == "InternLM2ForCausalLM" else \
        "language_model.model.embed_tokens.weight"
    tied = bool(t.get("tie_word_embeddings", False))
    # Untied: N(0, 1) embeddings. Tied (Qwen2-0.5B): N(0, 1/D), else the output layer would mostly repeat the last
    # input token (its own embedding dominates the residual stream).
    sd[embed_name] = (torch.randn(vocab, D, generator=gen) * (D ** -0.5 if tied else 1.0)).to(dtype)
    for n in range(t["num_hidden_layers"]):
        p = f"language_model.model.layers.{n}."
        if arch == "InternLM2ForCausalLM":
            sd.update({
                p + "attention.wqkv.weight": normal((H + 2 * Hkv) * d, D),
                p + "attention.wo.weight": normal(D, D),
                p + "feed_forward.w1.weight": normal(F, D), p + "feed_forward.w3.weight": normal(F, D),
                p + "feed_forward.w2.weight": normal(D, F),
                p + "attention_norm.weight": ones(D), p + "ffn_norm.weight": ones(D),
            })
        elif arch == "Qwen2ForCausalLM":
            sd.update({
                p + "self_attn.q_proj.weight": normal(H * d, D), p + "self_attn.q_proj.bias": normal(H * d),
                p + "self_attn.k_proj.weight": normal(Hkv * d, D), p + "self_attn.k_proj.bias": normal(Hkv * d),
                p + "self_attn.v_proj.weight": normal(Hkv * d, D), p + "self_attn.v_proj.bias": normal(Hkv * d),
                p + "self_attn.o_proj.weight": normal(D, H * d),
                p + "mlp.gate_proj.weight": normal(F, D), p + "mlp.up_proj.weight": normal(F, D),
                p + "mlp.down_proj.weight": normal(D, F),
                p + "input_layernorm.weight": ones(D), p + "post_attention_layernorm.weight": ones(D),
            })
        elif arch == "Phi3ForCausalLM":
            sd.update({
                p + "self_attn.qkv_proj.weight": normal((H + 2 * Hkv) * d, D),
                p + "self_attn.o_proj.weight": normal(D, H * d),
                p + "mlp.gate_up_proj.weight": normal(2 * F, D), p + "mlp.down_proj.weight": normal(D, F),
                p + "input_layernorm.weight": ones(D), p + "post_attention_layernorm.weight": ones(D),
            })
        else:
            raise ValueError(f"no fixture writer for llm_config.architectures {arch!r}")
    output = torch.randn(vocab, D, generator=gen)
    sd["language_model.model.norm.weight"] = ones(D)
    if not tied:
        head = "language_model.output.weight" if arch == "InternLM2ForCausalLM" else "language_model.lm_head.weight"
        sd[head] = output.to(dtype)
    return sd


def write_checkpoint(out_dir: str | Path, real_shapes: bool = False, seed: int = 0, shards: int = 1,
                     family: str = "2b") -> Path:
    """Write a random original-format checkpoint of family member ``family`` ('1b', '2b', '4b') into ``out_dir``."""
    if family not in MEMBERS:
        raise ValueError(f"unknown family member {family!r}; use one of {', '.join(MEMBERS)}")
    member = MEMBERS[family]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok_vocab = member.train_tokenizer(out_dir, seed=seed)
    vision = REAL_VISION if real_shapes else TINY_VISION
    llm = member.real_llm if real_shapes else member.tiny_llm
    vocab = member.real_vocab if real_shapes else tok_vocab
    # the LLM's special-token ids: the real ones with the real vocabulary, else where the tiny tokenizer put them
    first_added = None if real_shapes else tok_vocab - member.n_added - len(INTERNVL_ADDED_TOKENS)
    config = original_config(vision, llm, vocab, family=family, first_added=first_added)
    _write_json(out_dir / "config.json", config)
    _write_json(out_dir / "generation_config.json", {"_from_model_config": True, "transformers_version": "4.37.2"})
    state = original_state_dict(config, seed=seed)
    save_sharded(state, out_dir, shards=shards)
    return out_dir


def write_family(out_dir: str | Path, families: str | Sequence[str] = "all", **kwargs) -> dict[str, Path]:
    """``write_checkpoint`` for several members into ``out_dir/<member key>/checkpoint`` ('all' = 1b, 2b, 4b);
    returns {key: checkpoint dir}."""
    keys = list(MEMBERS) if families == "all" else [families] if isinstance(families, str) else list(families)
    return {key: write_checkpoint(Path(out_dir) / key / "checkpoint", family=key, **kwargs) for key in keys}


def save_sharded(state: dict[str, torch.Tensor], out_dir: Path, shards: int = 1) -> None:
    """``model.safetensors`` (shards=1) or ``model-0000k-of-0000n.safetensors`` + index, as transformers saves."""
    metadata = {"format": "pt"}
    if shards <= 1:
        save_file(state, str(out_dir / "model.safetensors"), metadata=metadata)
        return
    keys = list(state)
    per = -(-len(keys) // shards)
    weight_map, total = {}, 0
    for k in range(shards):
        name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {key: state[key] for key in keys[k * per:(k + 1) * per]}
        save_file(part, str(out_dir / name), metadata=metadata)
        weight_map.update({key: name for key in part})
        total += sum(t.numel() * t.element_size() for t in part.values())
    _write_json(out_dir / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
