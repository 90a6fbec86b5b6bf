"""Write random checkpoints in the *original* Mini-Monkey / InternVL2-2B format (tests, demo, speed runs).

``write_checkpoint(out_dir)`` writes ``config.json`` (InternVLChatConfig with ``vision_config`` for InternViT and
``llm_config`` for InternLM2: the same fields as the published checkpoints), ``model.safetensors`` with the
original parameter names and layouts (fused ``wqkv`` grouped per KV head, InternViT ``attn.qkv``, ``mlp1.*``), and
the tokenizer files: a small sentencepiece BPE model trained on the spot, whose last six pieces are
``[UNUSED_TOKEN_141..146]`` (remapped to ``<|plugin|>`` ... ``<|im_end|>``, ``<|im_start|>`` by
``tokenizer_config.json``, as in InternLM2), followed by InternVL's nine added tokens (``added_tokens.json``).

* tiny (default): InternViT with 2 layers of width 64 at the real 448 px / 14 px patch geometry (so tiles, 256
  tokens per tile and pixel shuffle are the real ones) and an InternLM2 of 3 layers, width 64, 4 heads, 2 KV heads.
  Matrices is N(0, 1/fan_in) (so answers depend on the image and the question), vectors N(0, 0.02), norms 1, layer scales 1.
* ``real_shapes=True``: InternVL2-2B's real sizes (InternViT-300M + internlm2-chat-1.8B, vocab 92553), random bf16
  weights, for GPU speed runs. The tokenizer stays the tiny one (its ids fit in the real vocabulary).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .prompt import INTERNVL2_SYSTEM_MESSAGE
from .tokenizer import INTERNVL_ADDED_TOKENS

UNUSED_REMAP = ("<|plugin|>", "<|interpreter|>", "<|action_end|>", "<|action_start|>", "<|im_end|>", "<|im_start|>")

TINY_VISION = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
TINY_LLM = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128)
REAL_VISION = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
REAL_LLM = dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8,
                intermediate_size=8192)
REAL_VOCAB = 92553

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


def original_config(vision: dict, llm: dict, vocab_size: int, max_dynamic_patch: int = 12) -> dict:
    """config.json in InternVLChatConfig format, with the fields of the published InternVL2-2B / Mini-Monkey."""
    vision_config = {
        "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "attention_dropout": 0.0,
        "drop_path_rate": 0.0, "dropout": 0.0, "hidden_act": "gelu", "image_size": 448, "initializer_factor": 1.0,
        "initializer_range": 0.02, "layer_norm_eps": 1e-06, "norm_type": "layer_norm", "num_channels": 3,
        "patch_size": 14, "qk_normalization": False, "qkv_bias": True, "use_flash_attn": True,
        "torch_dtype": "bfloat16", **vision,
    }
    llm_config = {
        "architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2",
        "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                     "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                     "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
        "attn_implementation": "flash_attention_2", "bias": False, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "initializer_range": 0.02, "max_position_embeddings": 32768, "pad_token_id": 2,
        "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 2.0, "type": "dynamic"}, "rope_theta": 1000000,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": vocab_size, **llm,
    }
    return {
        "_commit_hash": None, "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                     "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": 448, "llm_config": llm_config,
        "max_dynamic_patch": max_dynamic_patch, "min_dynamic_patch": 1, "model_type": "internvl_chat",
        "ps_version": "v2", "select_layer": -1, "template": "internlm2-chat", "torch_dtype": "bfloat16",
        "use_backbone_lora": 0, "use_llm_lora": 0, "use_thumbnail": True, "pad2square": False,
        "vision_config": vision_config,
    }


def original_state_dict(config: dict, seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Random tensors with the original names and layouts for ``config``."""
    gen = torch.Generator().manual_seed(seed)
    v, t = config["vision_config"], config["llm_config"]
    V, I_v, P = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    n_pos = (v["image_size"] // P) ** 2 + 1
    D, F, H, Hkv = t["hidden_size"], t["intermediate_size"], t["num_attention_heads"], t["num_key_value_heads"]
    d = D // H
    vocab = t["vocab_size"]

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
        "language_model.model.tok_embeddings.weight": (torch.randn(vocab, D, generator=gen)).to(dtype),
    })
    for n in range(t["num_hidden_layers"]):
        p = f"language_model.model.layers.{n}."
        sd.update({
            p + "attention.wqkv.weight": normal((H + 2 * Hkv) * d, D),
            p + "attention.wo.weight": normal(D, D),
            p + "feed_forward.w1.weight": normal(F, D), p + "feed_forward.w3.weight": normal(F, D),
            p + "feed_forward.w2.weight": normal(D, F),
            p + "attention_norm.weight": ones(D), p + "ffn_norm.weight": ones(D),
        })
    output = torch.randn(vocab, D, generator=gen)
    sd["language_model.model.norm.weight"] = ones(D)
    sd["language_model.output.weight"] = output.to(dtype)
    return sd


def write_checkpoint(out_dir: str | Path, real_shapes: bool = False, seed: int = 0, shards: int = 1) -> Path:
    """Write a random original-format checkpoint into ``out_dir``; returns the directory."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok_vocab = train_tokenizer(out_dir, seed=seed)
    vision, llm = (REAL_VISION, REAL_LLM) if real_shapes else (TINY_VISION, TINY_LLM)
    vocab = REAL_VOCAB if real_shapes else tok_vocab
    config = original_config(vision, llm, vocab)
    _write_json(out_dir / "config.json", config)
    _write_json(out_dir / "generation_config.json", {"_from_model_config": True, "transformers_version": "4.37.2"})
    state = original_state_dict(config, seed=seed)
    save_sharded(state, out_dir, shards=shards)
    return out_dir


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
