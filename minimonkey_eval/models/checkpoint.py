"""Checkpoint loading: the original InternVL/Mini-Monkey format onto transformers' native modules.

Original format (as published for mx262/MiniMonkey and OpenGVLab/InternVL2-2B): ``config.json``
(``InternVLChatConfig`` with ``vision_config`` for InternViT and ``llm_config`` for InternLM2), ``model.safetensors``
or sharded ``*.safetensors`` + ``model.safetensors.index.json``, and the tokenizer files.

The weights land on ``transformers.InternVLForConditionalGeneration`` (native InternVL vision tower + projector)
whose language model is a native Llama: InternLM2 is Llama with a fused, per-KV-group ``wqkv``.
The conversion is a declarative key table (original <-> native, read both ways) plus two tensor surgeries
(:func:`split_internlm2_wqkv`, :func:`split_vit_qkv`). Loading is strict: every tensor consumed, every shape checked;
any problem is a one-line :class:`CheckpointError` naming the tensor and the file. Only safetensors are read
(never pickle) and no code from the checkpoint is executed.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import UserFacingError

CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"


class CheckpointError(UserFacingError):
    """The checkpoint directory is missing, incomplete or does not match its config."""


# ---------------------------------------------------------------------------------------------------------------------
# Key table: original name <-> native name. `{n}` is a layer number. Entries with several native names are surgeries.
# ---------------------------------------------------------------------------------------------------------------------
VIT = "vision_model."
NATIVE_VIT = "model.vision_tower."
LLM = "language_model.model."
NATIVE_LLM = "model.language_model."

KEY_TABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    # InternViT -> InternVLVisionModel
    (VIT + "embeddings.class_embedding", (NATIVE_VIT + "embeddings.cls_token",)),
    (VIT + "embeddings.patch_embedding.weight", (NATIVE_VIT + "embeddings.patch_embeddings.projection.weight",)),
    (VIT + "embeddings.patch_embedding.bias", (NATIVE_VIT + "embeddings.patch_embeddings.projection.bias",)),
    (VIT + "embeddings.position_embedding", (NATIVE_VIT + "embeddings.position_embeddings",)),
    (VIT + "encoder.layers.{n}.attn.qkv.weight", tuple(NATIVE_VIT + f"encoder.layer.{{n}}.attention.{p}_proj.weight" for p in "qkv")),
    (VIT + "encoder.layers.{n}.attn.qkv.bias", tuple(NATIVE_VIT + f"encoder.layer.{{n}}.attention.{p}_proj.bias" for p in "qkv")),
    (VIT + "encoder.layers.{n}.attn.proj.weight", (NATIVE_VIT + "encoder.layer.{n}.attention.projection_layer.weight",)),
    (VIT + "encoder.layers.{n}.attn.proj.bias", (NATIVE_VIT + "encoder.layer.{n}.attention.projection_layer.bias",)),
    (VIT + "encoder.layers.{n}.ls1", (NATIVE_VIT + "encoder.layer.{n}.lambda_1",)),
    (VIT + "encoder.layers.{n}.ls2", (NATIVE_VIT + "encoder.layer.{n}.lambda_2",)),
    (VIT + "encoder.layers.{n}.norm1.weight", (NATIVE_VIT + "encoder.layer.{n}.layernorm_before.weight",)),
    (VIT + "encoder.layers.{n}.norm1.bias", (NATIVE_VIT + "encoder.layer.{n}.layernorm_before.bias",)),
    (VIT + "encoder.layers.{n}.norm2.weight", (NATIVE_VIT + "encoder.layer.{n}.layernorm_after.weight",)),
    (VIT + "encoder.layers.{n}.norm2.bias", (NATIVE_VIT + "encoder.layer.{n}.layernorm_after.bias",)),
    (VIT + "encoder.layers.{n}.mlp.fc1.weight", (NATIVE_VIT + "encoder.layer.{n}.mlp.fc1.weight",)),
    (VIT + "encoder.layers.{n}.mlp.fc1.bias", (NATIVE_VIT + "encoder.layer.{n}.mlp.fc1.bias",)),
    (VIT + "encoder.layers.{n}.mlp.fc2.weight", (NATIVE_VIT + "encoder.layer.{n}.mlp.fc2.weight",)),
    (VIT + "encoder.layers.{n}.mlp.fc2.bias", (NATIVE_VIT + "encoder.layer.{n}.mlp.fc2.bias",)),
    # mlp1 -> InternVLMultiModalProjector (mlp1.2 is the parameter-free GELU)
    ("mlp1.0.weight", ("model.multi_modal_projector.layer_norm.weight",)),
    ("mlp1.0.bias", ("model.multi_modal_projector.layer_norm.bias",)),
    ("mlp1.1.weight", ("model.multi_modal_projector.linear_1.weight",)),
    ("mlp1.1.bias", ("model.multi_modal_projector.linear_1.bias",)),
    ("mlp1.3.weight", ("model.multi_modal_projector.linear_2.weight",)),
    ("mlp1.3.bias", ("model.multi_modal_projector.linear_2.bias",)),
    # InternLM2 -> Llama
    (LLM + "tok_embeddings.weight", (NATIVE_LLM + "embed_tokens.weight",)),
    (LLM + "layers.{n}.attention.wqkv.weight", tuple(NATIVE_LLM + f"layers.{{n}}.self_attn.{p}_proj.weight" for p in "qkv")),
    (LLM + "layers.{n}.attention.wo.weight", (NATIVE_LLM + "layers.{n}.self_attn.o_proj.weight",)),
    (LLM + "layers.{n}.feed_forward.w1.weight", (NATIVE_LLM + "layers.{n}.mlp.gate_proj.weight",)),
    (LLM + "layers.{n}.feed_forward.w3.weight", (NATIVE_LLM + "layers.{n}.mlp.up_proj.weight",)),
    (LLM + "layers.{n}.feed_forward.w2.weight", (NATIVE_LLM + "layers.{n}.mlp.down_proj.weight",)),
    (LLM + "layers.{n}.attention_norm.weight", (NATIVE_LLM + "layers.{n}.input_layernorm.weight",)),
    (LLM + "layers.{n}.ffn_norm.weight", (NATIVE_LLM + "layers.{n}.post_attention_layernorm.weight",)),
    (LLM + "norm.weight", (NATIVE_LLM + "norm.weight",)),
    ("language_model.output.weight", ("lm_head.weight",)),
)


def _pattern(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{n\}", r"(?P<n>\d+)") + "$")


_FORWARD = [(_pattern(orig), orig, natives) for orig, natives in KEY_TABLE]
_REVERSE = [(_pattern(native), orig, natives, i) for orig, natives in KEY_TABLE for i, native in enumerate(natives)]


def native_keys_for(original_key: str) -> tuple[str, ...] | None:
    """Native names an original tensor maps to (several for fused tensors); None if the key is not in the table."""
    for regex, _, natives in _FORWARD:
        match = regex.match(original_key)
        if match:
            n = match.groupdict().get("n")
            return tuple(t.replace("{n}", n) if n is not None else t for t in natives)
    return None


def original_key_for(native_key: str) -> str | None:
    """The original tensor a native parameter comes from."""
    for regex, orig, _, _ in _REVERSE:
        match = regex.match(native_key)
        if match:
            n = match.groupdict().get("n")
            return orig.replace("{n}", n) if n is not None else orig
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Surgeries
# ---------------------------------------------------------------------------------------------------------------------
def split_internlm2_wqkv(wqkv: torch.Tensor, num_heads: int, num_kv_heads: int) -> tuple[torch.Tensor, ...]:
    """InternLM2's fused wqkv, rows grouped per KV head as [q x G, k, v] (G = heads / kv heads), into Llama q, k, v."""
    rows, hidden = wqkv.shape
    groups = num_heads // num_kv_heads
    head_dim = rows // (num_kv_heads * (groups + 2))
    blocks = wqkv.reshape(num_kv_heads, groups + 2, head_dim, hidden)
    q = blocks[:, :groups].reshape(num_heads * head_dim, hidden)
    k = blocks[:, groups].reshape(num_kv_heads * head_dim, hidden)
    v = blocks[:, groups + 1].reshape(num_kv_heads * head_dim, hidden)
    return q.contiguous(), k.contiguous(), v.contiguous()


def split_vit_qkv(qkv: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """InternViT's qkv (layout: all q rows, then k, then v) into three equal parts."""
    return tuple(part.contiguous() for part in qkv.chunk(3, dim=0))


# ---------------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------------
SUPPORTED_LLMS = ("InternLM2ForCausalLM",)


@dataclass
class OriginalConfig:
    """The fields of the original config.json the harness uses, plus the raw dict."""

    raw: dict
    vision: dict
    llm: dict
    llm_arch: str
    template: str
    downsample_ratio: float
    select_layer: int
    image_size: int
    ps_version: str
    system_message: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_image_token(self) -> int:
        patch = self.vision.get("patch_size", 14)
        return int((self.image_size // patch) ** 2 * self.downsample_ratio ** 2)


def read_config(path: str | Path) -> OriginalConfig:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found; pass --model-path DIR holding config.json, "
                              "*.safetensors and tokenizer.model")
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(f"{config_file}: missing; not an InternVL/Mini-Monkey checkpoint directory")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{config_file}: invalid JSON ({exc})") from None
    vision, llm = raw.get("vision_config"), raw.get("llm_config")
    if not isinstance(vision, dict) or not isinstance(llm, dict):
        raise CheckpointError(f"{config_file}: needs 'vision_config' and 'llm_config' (InternVLChatConfig format); "
                              f"got keys {sorted(raw)[:8]}")
    archs = llm.get("architectures") or ["?"]
    if archs[0] not in SUPPORTED_LLMS:
        raise CheckpointError(f"{config_file}: llm_config.architectures {archs[0]!r} is not supported; "
                              f"supported: {', '.join(SUPPORTED_LLMS)}")
    if vision.get("qk_normalization"):
        raise CheckpointError(f"{config_file}: vision_config.qk_normalization=true (InternViT-6B) is not supported; "
                              "only InternViT-300M-448px checkpoints are")
    if raw.get("ps_version", "v2") != "v2":
        raise CheckpointError(f"{config_file}: ps_version {raw.get('ps_version')!r} is not supported (only 'v2')")
    return OriginalConfig(
        raw=raw, vision=vision, llm=llm, llm_arch=archs[0],
        template=raw.get("template", "internlm2-chat"),
        downsample_ratio=float(raw.get("downsample_ratio", 0.5)),
        select_layer=int(raw.get("select_layer", -1)),
        image_size=int(raw.get("force_image_size") or vision.get("image_size", 448)),
        ps_version=raw.get("ps_version", "v2"),
        system_message=raw.get("system_message"),
    )


def native_config(cfg: OriginalConfig, image_token_id: int, attn_implementation: str = "sdpa"):
    """Build the native ``InternVLConfig`` (InternVL vision tower + Llama text model) from the original config."""
    from transformers import InternVLConfig, LlamaConfig
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

    v, t = cfg.vision, cfg.llm
    norm_type = v.get("norm_type", "rms_norm")
    vision_config = InternVLVisionConfig(
        hidden_size=v["hidden_size"], num_hidden_layers=v["num_hidden_layers"],
        num_attention_heads=v["num_attention_heads"], intermediate_size=v["intermediate_size"],
        hidden_act=v.get("hidden_act", "gelu"), image_size=cfg.image_size, patch_size=v.get("patch_size", 14),
        num_channels=v.get("num_channels", 3), attention_bias=bool(v.get("qkv_bias", True)), use_qk_norm=False,
        norm_type=norm_type, layer_norm_eps=v.get("layer_norm_eps", 1e-6), use_mean_pooling=True,
        use_absolute_position_embeddings=True, layer_scale_init_value=v.get("initializer_factor", 1.0),
    )
    rope_scaling = t.get("rope_scaling")
    rope = {"rope_type": "default", "rope_theta": float(t.get("rope_theta", 10000.0))}
    if rope_scaling and rope_scaling.get("type", rope_scaling.get("rope_type")) in ("dynamic", "linear"):
        rope = {"rope_type": rope_scaling.get("type", rope_scaling.get("rope_type")),
                "factor": float(rope_scaling["factor"]), "rope_theta": rope["rope_theta"]}
    text_config = LlamaConfig(
        vocab_size=t["vocab_size"], hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
        num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
        num_key_value_heads=t.get("num_key_value_heads", t["num_attention_heads"]), hidden_act=t.get("hidden_act", "silu"),
        max_position_embeddings=t.get("max_position_embeddings", 32768), rms_norm_eps=t.get("rms_norm_eps", 1e-6),
        attention_bias=bool(t.get("bias", False)), mlp_bias=False, tie_word_embeddings=False,
        bos_token_id=t.get("bos_token_id", 1), eos_token_id=t.get("eos_token_id", 2), pad_token_id=t.get("pad_token_id", 2),
        rope_parameters=rope,
    )
    config = InternVLConfig(
        vision_config=vision_config, text_config=text_config, downsample_ratio=cfg.downsample_ratio,
        vision_feature_layer=cfg.select_layer, vision_feature_select_strategy="default", projector_hidden_act="gelu",
        image_token_id=image_token_id, image_seq_length=cfg.num_image_token, tie_word_embeddings=False,
    )
    config._attn_implementation = attn_implementation
    config.text_config._attn_implementation = attn_implementation
    config.vision_config._attn_implementation = "eager" if attn_implementation == "eager" else "sdpa"
    return config


# ---------------------------------------------------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------------------------------------------------
def safetensors_files(path: Path) -> dict[str, Path]:
    """Map every stored tensor name to the safetensors file that holds it (checks the shard index)."""
    index_file = path / INDEX_NAME
    if index_file.is_file():
        try:
            weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{index_file}: invalid shard index ({exc})") from None
        located = {}
        for key, shard in weight_map.items():
            shard_path = path / shard
            if not shard_path.is_file():
                raise CheckpointError(f"{shard_path}: shard listed in {INDEX_NAME} (tensor {key}) is missing")
            located[key] = shard_path
        for shard_path in sorted(set(located.values())):
            stored = set(_tensor_names(shard_path))
            for key in (k for k, p in located.items() if p == shard_path):
                if key not in stored:
                    raise CheckpointError(f"{shard_path}: tensor {key} listed in {INDEX_NAME} is not in this shard")
        return located
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
        hint = (f" (found {pickles[0]}: pickle checkpoints are not loaded; convert them to safetensors)" if pickles else "")
        raise CheckpointError(f"{path}: no *.safetensors weights{hint}")
    located = {}
    for file in files:
        for key in _tensor_names(file):
            located[key] = file
    return located


def _tensor_names(file: Path) -> list[str]:
    try:
        with safe_open(str(file), framework="pt") as handle:
            return list(handle.keys())
    except Exception as exc:  # safetensors raises SafetensorError on truncated/corrupt headers
        raise CheckpointError(f"{file}: unreadable safetensors file ({exc})") from None


def _tensor_shape(file: Path, key: str) -> tuple[int, ...]:
    with safe_open(str(file), framework="pt") as handle:
        return tuple(handle.get_slice(key).get_shape())


def expected_original_shapes(native_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Original tensor name -> shape, derived from the native model (fused tensors: concatenated rows)."""
    expected: dict[str, tuple[int, ...]] = {}
    for native_key, shape in native_shapes.items():
        original = original_key_for(native_key)
        if original is None:
            raise CheckpointError(f"internal: native parameter {native_key} has no original name in KEY_TABLE")
        if original in expected and len(native_keys_for(original)) > 1:
            prev = expected[original]
            expected[original] = (prev[0] + shape[0],) + tuple(shape[1:])
        else:
            expected[original] = tuple(shape)
    return expected


def convert_state_dict(located: dict[str, Path], native_shapes: dict[str, tuple[int, ...]], cfg: OriginalConfig,
                       dtype: torch.dtype, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read, check and convert all tensors; returns the native state dict."""
    expected = expected_original_shapes(native_shapes)
    for key in sorted(expected):
        if key not in located:
            where = INDEX_NAME if any(p.name != "model.safetensors" for p in located.values()) else "model.safetensors"
            raise CheckpointError(f"{next(iter(located.values())).parent / where}: missing tensor {key} "
                                  f"(expected shape {list(expected[key])})")
    for key, file in sorted(located.items()):
        if key not in expected:
            raise CheckpointError(f"{file}: unexpected tensor {key} (not part of an InternViT + InternLM2 checkpoint "
                                  "with this config.json)")
    heads, kv_heads = cfg.llm["num_attention_heads"], cfg.llm.get("num_key_value_heads", cfg.llm["num_attention_heads"])
    state: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for key, file in located.items():
        by_file.setdefault(file, []).append(key)
    for file, keys in by_file.items():
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for key in keys:
                shape = tuple(handle.get_slice(key).get_shape())
                if shape != expected[key]:
                    raise CheckpointError(f"{file}: tensor {key} has shape {list(shape)}, config.json implies "
                                          f"{list(expected[key])}")
                tensor = handle.get_tensor(key)
                natives = native_keys_for(key)
                if len(natives) == 1:
                    parts = (tensor,)
                elif ".wqkv." in key:
                    parts = split_internlm2_wqkv(tensor, heads, kv_heads)
                else:
                    parts = split_vit_qkv(tensor)
                for native_key, part in zip(natives, parts):
                    state[native_key] = part.to(device=device, dtype=dtype)
    return state


def checkpoint_fingerprint(path: str | Path) -> str:
    """A cheap, stable hash of a checkpoint: sha256 over config.json, the index and each safetensors header."""
    path = Path(path)
    digest = hashlib.sha256()
    for name in (CONFIG_NAME, INDEX_NAME, "tokenizer.model"):
        if (path / name).is_file():
            digest.update(name.encode())
            digest.update((path / name).read_bytes())
    for file in sorted(path.glob("*.safetensors")):
        with open(file, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            digest.update(file.name.encode())
            digest.update(handle.read(min(header_len, 64 << 20)))
            handle.seek(0, 2)
            digest.update(str(handle.tell()).encode())
    return digest.hexdigest()


def load_pretrained(path: str | Path, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
                    attn_implementation: str = "sdpa"):
    """Load an original-format checkpoint: returns ``(model, tokenizer, original_config)``.

    The native model is built on the meta device and the converted tensors are assigned to it, so no random
    initialisation runs; the rotary embedding (a computed, non-persistent buffer) is rebuilt on the target device.
    """
    from transformers import InternVLForConditionalGeneration
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from .tokenizer import IMG_CONTEXT, InternLM2Tokenizer, TokenizerError

    path = Path(path)
    cfg = read_config(path)
    try:
        tokenizer = InternLM2Tokenizer.from_pretrained(path)
    except TokenizerError as exc:
        raise CheckpointError(str(exc)) from None
    vocab = cfg.llm["vocab_size"]
    if len(tokenizer) > vocab:
        raise CheckpointError(f"{path / 'tokenizer.model'}: tokenizer has {len(tokenizer)} tokens but config.json "
                              f"llm_config.vocab_size is {vocab}; tokenizer and weights do not belong together")
    located = safetensors_files(path)
    config = native_config(cfg, tokenizer.convert_tokens_to_ids(IMG_CONTEXT), attn_implementation)
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    native_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = convert_state_dict(located, native_shapes, cfg, dtype=dtype, device=device)
    model.load_state_dict(state, strict=True, assign=True)
    language_model = model.model.language_model
    language_model.rotary_emb = LlamaRotaryEmbedding(config.text_config).to(device)
    leftovers = [name for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftovers:
        raise CheckpointError(f"{path}: internal: tensors left uninitialised after loading: {leftovers[:3]}")
    # inv_freq stays fp32 (as transformers and the official InternLM2 keep it); every weight is already in `dtype`.
    model.eval()
    return model, tokenizer, cfg
