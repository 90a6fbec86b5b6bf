"""Checkpoint loading: the original InternVL/Mini-Monkey format onto transformers' native modules.

Original format (as published for mx262/MiniMonkey and OpenGVLab/InternVL2-1B/2B/4B): ``config.json``
(``InternVLChatConfig`` with ``vision_config`` for InternViT and ``llm_config`` for the LLM), ``model.safetensors``
or sharded ``*.safetensors`` + ``model.safetensors.index.json``, and the tokenizer files.

The weights land on ``transformers.InternVLForConditionalGeneration`` (native InternVL vision tower + projector)
whose text model is picked by ``llm_config.architectures[0]`` through the adapter registry :data:`ADAPTERS`:

* ``InternLM2ForCausalLM`` (Mini-Monkey, InternVL2-2B) -> native Llama: InternLM2 is Llama with a fused,
  per-KV-group ``wqkv`` (surgery :func:`split_internlm2_wqkv`);
* ``Qwen2ForCausalLM`` (Mini-InternVL2-1B) -> native Qwen2 (names unchanged; optional tied output layer);
* ``Phi3ForCausalLM`` (Mini-InternVL2-4B) -> native Phi3 (names unchanged; fused ``qkv_proj`` / ``gate_up_proj``
  stay fused; Phi-3's ``su``/``longrope`` RoPE as native ``longrope``, :func:`phi3_rope_parameters`).

Each conversion is a declarative key table (original <-> native, read both ways) plus the named tensor surgeries
(:func:`split_internlm2_wqkv`, :func:`split_vit_qkv`). Loading is strict: every tensor consumed, every shape checked;
any problem is a one-line :class:`CheckpointError` naming the tensor and the file. Only safetensors are read
(never pickle) and no code from the checkpoint is executed.
"""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open

from minimonkey_eval.errors import CheckpointError, require_checkpoint_dir
from minimonkey_eval.models.attention import configure_attention
from minimonkey_eval.models.chat_template import TEMPLATES, TEMPLATES_FOR_ARCH
from minimonkey_eval.models.config_check import ConfigShapeError, check_original_config
from minimonkey_eval.models.key_tables import (
    INTERNLM2_KEY_TABLE,
    LLM,
    LM_HEAD,
    NATIVE_LLM,
    PHI3_KEY_TABLE,
    QWEN2_KEY_TABLE,
    VISION_KEY_TABLE,
    VIT,
    match_original,
    native_keys_for,
    original_key_for,
)
from minimonkey_eval.models.side_files import ShardIndex, read_side_file

logger = logging.getLogger(__name__)

# safetensors dtypes a weight may be stored in (F8 and integer formats need a conversion this loader does not do).
WEIGHT_DTYPES = ("F32", "F16", "BF16")
CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"


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


def _vit_qkv(tensor: torch.Tensor, llm: dict) -> tuple[torch.Tensor, ...]:
    return split_vit_qkv(tensor)


def _internlm2_wqkv(tensor: torch.Tensor, llm: dict) -> tuple[torch.Tensor, ...]:
    heads = llm["num_attention_heads"]
    return split_internlm2_wqkv(tensor, heads, llm.get("num_key_value_heads", heads))


# Original key template -> surgery(tensor, llm_config) giving the native parts in the table's order.
VISION_SURGERIES = {
    VIT + "encoder.layers.{n}.attn.qkv.weight": _vit_qkv,
    VIT + "encoder.layers.{n}.attn.qkv.bias": _vit_qkv,
}


# ---------------------------------------------------------------------------------------------------------------------
# Native text configs, one builder per LLM family (the original llm_config dict in, a transformers config out)
# ---------------------------------------------------------------------------------------------------------------------
class _ConfigValueError(ValueError):
    """An llm_config value the native model cannot reproduce (turned into a CheckpointError naming config.json)."""


def _common_text_fields(t: dict, tied: bool) -> dict:
    return dict(
        vocab_size=t["vocab_size"], hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
        num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
        num_key_value_heads=t.get("num_key_value_heads") or t["num_attention_heads"],
        hidden_act=t.get("hidden_act", "silu"), tie_word_embeddings=tied,
    )


def _rope_type(rope_scaling: dict) -> str:
    return rope_scaling.get("type", rope_scaling.get("rope_type"))


def _plain_rope(t: dict, default_theta: float) -> dict:
    """RoPE of Llama-style configs: default, or linear / dynamic-NTK scaling."""
    rope = {"rope_type": "default", "rope_theta": float(t.get("rope_theta", default_theta))}
    rope_scaling = t.get("rope_scaling")
    if rope_scaling:
        kind = _rope_type(rope_scaling)
        if kind not in ("dynamic", "linear"):
            raise _ConfigValueError(f"llm_config.rope_scaling type {kind!r} is not supported here "
                                    "(supported: linear, dynamic)")
        rope = {"rope_type": kind, "factor": float(rope_scaling["factor"]), "rope_theta": rope["rope_theta"]}
    return rope


def _llama_from_internlm2(t: dict, tied: bool):
    from transformers import LlamaConfig

    return LlamaConfig(
        **_common_text_fields(t, tied), max_position_embeddings=t.get("max_position_embeddings", 32768),
        rms_norm_eps=t.get("rms_norm_eps", 1e-6), attention_bias=bool(t.get("bias", False)), mlp_bias=False,
        bos_token_id=t.get("bos_token_id", 1), eos_token_id=t.get("eos_token_id", 2),
        pad_token_id=t.get("pad_token_id", 2),
        rope_parameters=_plain_rope(t, 10000.0),
    )


def _qwen2(t: dict, tied: bool):
    from transformers import Qwen2Config

    layers = t["num_hidden_layers"]
    return Qwen2Config(
        **_common_text_fields(t, tied), max_position_embeddings=t.get("max_position_embeddings", 32768),
        rms_norm_eps=t.get("rms_norm_eps", 1e-6), use_sliding_window=bool(t.get("use_sliding_window", False)),
        sliding_window=t.get("sliding_window"), max_window_layers=t.get("max_window_layers", layers),
        attention_dropout=0.0, bos_token_id=t.get("bos_token_id"), eos_token_id=t.get("eos_token_id"),
        pad_token_id=t.get("pad_token_id"), rope_parameters=_plain_rope(t, 10000.0),
    )


def phi3_rope_parameters(t: dict) -> dict:
    """Phi-3's RoPE as native ``rope_parameters``.

    InternVL's own Phi-3 code (``internvl/model/phi3/modeling_phi3.py``) knows ``su`` (Phi-3-mini-128k; later renamed
    ``longrope``) and ``yarn``. Both pick ``long_factor`` when
    ``max(position_ids) + 1 > original_max_position_embeddings`` and ``short_factor`` otherwise (exactly native
    ``longrope``) and multiply cos/sin by a constant: ``su`` ``sqrt(1 + ln(s) / ln(original_max))``, ``yarn``
    ``0.1 ln(s) + 1``, with ``s = max_position_embeddings / original_max_position_embeddings`` (1 when s <= 1). That
    constant is passed as ``attention_factor``.
    """
    theta = float(t.get("rope_theta", 10000.0))
    rope_scaling = t.get("rope_scaling")
    if not rope_scaling:
        return {"rope_type": "default", "rope_theta": theta}
    kind = _rope_type(rope_scaling)
    if kind not in ("su", "longrope", "yarn"):
        raise _ConfigValueError(f"llm_config.rope_scaling type {kind!r} is not supported for Phi-3 "
                                "(supported: su, longrope, yarn)")
    original = int(t.get("original_max_position_embeddings") or rope_scaling.get("original_max_position_embeddings")
                   or t.get("max_position_embeddings", 4096))
    scale = t.get("max_position_embeddings", original) / original
    if scale <= 1.0:
        factor = 1.0
    elif kind == "yarn":
        factor = 0.1 * math.log(scale) + 1.0
    else:
        factor = math.sqrt(1 + math.log(scale) / math.log(original))
    return {"rope_type": "longrope", "rope_theta": theta, "short_factor": list(rope_scaling["short_factor"]),
            "long_factor": list(rope_scaling["long_factor"]), "original_max_position_embeddings": original,
            "factor": max(scale, 1.0), "attention_factor": factor,
            "partial_rotary_factor": float(t.get("partial_rotary_factor", 1.0))}


def _phi3(t: dict, tied: bool):
    from transformers import Phi3Config

    rope = phi3_rope_parameters(t)
    return Phi3Config(
        **_common_text_fields(t, tied), max_position_embeddings=t.get("max_position_embeddings", 4096),
        original_max_position_embeddings=rope.get("original_max_position_embeddings",
                                                  t.get("original_max_position_embeddings", 4096)),
        rms_norm_eps=t.get("rms_norm_eps", 1e-5), resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0,
        sliding_window=t.get("sliding_window"), bos_token_id=t.get("bos_token_id", 1),
        eos_token_id=t.get("eos_token_id", 32000), pad_token_id=t.get("pad_token_id", 32000), rope_parameters=rope,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Adapter registry: llm_config.architectures[0] -> how to load that LLM onto a native transformers text model
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LLMAdapter:
    """Everything arch-specific about loading one LLM family: data, not code paths."""

    arch: str                                   # llm_config.architectures[0]
    native: str                                 # native transformers model type of the text backbone
    key_table: tuple                            # original <-> native names (LLM part; the vision part is shared)
    text_config: Callable[[dict, bool], object]  # (llm_config, tied) -> transformers config
    surgeries: dict = field(default_factory=dict)  # original key template -> surgery(tensor, llm_config)
    lm_head: str = LM_HEAD                      # original output-layer name (absent from the file when tied)

    @property
    def full_table(self) -> tuple:
        return VISION_KEY_TABLE + self.key_table

    def tied(self, llm: dict, stored_keys=None) -> bool:
        """Output layer tied to the input embeddings: ``llm_config.tie_word_embeddings`` (default false, as in the
        LLM config classes; InternVL's config class forces false since Dec 2024) *and* the output layer not stored.

        A stored ``lm_head`` is always used: with the flag true and the tensor absent, the official code of the
        InternVL 2.0 release loads a random output layer (seen with transformers 4.37 and 4.44), so a working
        published checkpoint that says "tied" must either store it or mean the embeddings."""
        flag = bool(llm.get("tie_word_embeddings", False))
        return flag and (stored_keys is None or self.lm_head not in stored_keys)


ADAPTERS: dict[str, LLMAdapter] = {a.arch: a for a in (
    LLMAdapter("InternLM2ForCausalLM", "llama", INTERNLM2_KEY_TABLE, _llama_from_internlm2,
               {LLM + "layers.{n}.attention.wqkv.weight": _internlm2_wqkv}, lm_head="language_model.output.weight"),
    LLMAdapter("Qwen2ForCausalLM", "qwen2", QWEN2_KEY_TABLE, _qwen2),
    LLMAdapter("Phi3ForCausalLM", "phi3", PHI3_KEY_TABLE, _phi3),
)}
SUPPORTED_LLMS = tuple(ADAPTERS)


# ---------------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------------
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

    @property
    def num_image_token(self) -> int:
        patch = self.vision.get("patch_size", 14)
        return int((self.image_size // patch) ** 2 * self.downsample_ratio ** 2)

    @property
    def adapter(self) -> LLMAdapter:
        return ADAPTERS[self.llm_arch]


def read_config(path: str | Path) -> OriginalConfig:
    path = Path(path)
    require_checkpoint_dir(path)
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(f"{config_file}: missing; not an InternVL-format checkpoint directory")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError is a ValueError
        raise CheckpointError(f"{config_file}: invalid JSON ({' '.join(str(exc).split())[:200]})") from None
    try:
        check_original_config(raw, config_file)
    except ConfigShapeError as exc:
        raise CheckpointError(str(exc)) from None
    vision, llm = raw.get("vision_config"), raw.get("llm_config")
    archs = llm.get("architectures") or ["?"]
    if archs[0] not in ADAPTERS:
        raise CheckpointError(f"{config_file}: llm_config.architectures {archs[0]!r} is not supported; "
                              f"supported: {', '.join(SUPPORTED_LLMS)}")
    if vision.get("qk_normalization"):
        raise CheckpointError(f"{config_file}: vision_config.qk_normalization=true (InternViT-6B) is not supported; "
                              "only InternViT-300M-448px checkpoints are")
    if raw["ps_version"] != "v2":
        raise CheckpointError(f"{config_file}: ps_version {raw['ps_version']!r} is not supported (only 'v2')")
    template = raw.get("template", "internlm2-chat")
    if template not in TEMPLATES:
        raise CheckpointError(f"{config_file}: chat template {template!r} is not supported (supported: "
                              f"{', '.join(sorted(TEMPLATES))}); a newer checkpoint generation needs its own template")
    if template not in TEMPLATES_FOR_ARCH.get(archs[0], (template,)):
        raise CheckpointError(f"{config_file}: chat template {template!r} does not belong to {archs[0]} (its "
                              f"tokenizer's turns: {', '.join(TEMPLATES_FOR_ARCH[archs[0]])}); fix 'template'")
    _check_activation(config_file, "vision_config.hidden_act", vision.get("hidden_act", "gelu"))
    _check_activation(config_file, "llm_config.hidden_act", llm.get("hidden_act", "silu"))
    return OriginalConfig(
        raw=raw, vision=vision, llm=llm, llm_arch=archs[0],
        template=template,
        downsample_ratio=float(raw.get("downsample_ratio", 0.5)),
        select_layer=int(raw.get("select_layer", -1)),
        image_size=int(raw.get("force_image_size") or vision.get("image_size", 448)),
        ps_version=raw["ps_version"],
        system_message=raw.get("system_message"),
    )


def _check_activation(config_file: Path, field: str, name: str) -> None:
    """An activation transformers knows (its ``ACT2FN`` table), else one line naming the field."""
    from transformers.activations import ACT2FN

    if name not in ACT2FN:
        raise CheckpointError(f"{config_file}: {field} {name!r} is not an activation transformers knows "
                              "(e.g. 'silu', 'gelu')")


def native_config(cfg: OriginalConfig, image_token_id: int, attn_implementation: str = "sdpa",
                  stored_keys=None):
    """Build the native ``InternVLConfig`` (InternVL vision tower + the LLM family's native text model).

    ``stored_keys`` (the checkpoint's tensor names) decides whether a "tied" output layer is really tied."""
    from transformers import InternVLConfig
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

    v = cfg.vision
    norm_type = v.get("norm_type", "rms_norm")
    vision_config = InternVLVisionConfig(
        hidden_size=v["hidden_size"], num_hidden_layers=v["num_hidden_layers"],
        num_attention_heads=v["num_attention_heads"], intermediate_size=v["intermediate_size"],
        hidden_act=v.get("hidden_act", "gelu"), image_size=cfg.image_size, patch_size=v.get("patch_size", 14),
        num_channels=v.get("num_channels", 3), attention_bias=bool(v.get("qkv_bias", True)), use_qk_norm=False,
        norm_type=norm_type, layer_norm_eps=v.get("layer_norm_eps", 1e-6), use_mean_pooling=True,
        use_absolute_position_embeddings=True, layer_scale_init_value=v.get("initializer_factor", 1.0),
    )
    adapter = cfg.adapter
    tied = adapter.tied(cfg.llm, stored_keys)
    try:
        text_config = adapter.text_config(cfg.llm, tied)
        config = InternVLConfig(
            vision_config=vision_config, text_config=text_config, downsample_ratio=cfg.downsample_ratio,
            vision_feature_layer=cfg.select_layer, vision_feature_select_strategy="default",
            projector_hidden_act="gelu", image_token_id=image_token_id, image_seq_length=cfg.num_image_token,
            tie_word_embeddings=tied,
        )
    except _ConfigValueError as exc:
        raise CheckpointError(f"{CONFIG_NAME}: {exc}") from None
    except KeyError as exc:
        raise CheckpointError(f"{CONFIG_NAME}: llm_config lacks {exc} ({adapter.arch})") from None
    except (ValueError, TypeError, AttributeError) as exc:   # transformers' own config validation
        raise CheckpointError(f"{CONFIG_NAME}: transformers rejects the {adapter.arch} config: "
                              f"{' '.join(str(exc).split())[:300]}") from None
    configure_attention(config, attn_implementation)
    return config


# ---------------------------------------------------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------------------------------------------------
def safetensors_files(path: Path) -> dict[str, Path]:
    """Map every stored tensor name to the safetensors file that holds it (checks the shard index)."""
    index_file = path / INDEX_NAME
    if index_file.is_file():
        weight_map = read_side_file(index_file, ShardIndex).weight_map
        located = {}
        for key, shard in weight_map.items():
            shard_path = _shard_in(path, shard, index_file)
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
        hint = (f" (found {pickles[0]}: pickle checkpoints are not loaded; convert them to safetensors)"
                if pickles else "")
        raise CheckpointError(f"{path}: no *.safetensors weights{hint}")
    located = {}
    for file in files:
        _check_regular(file)
        for key in _tensor_names(file):
            located[key] = file
    return located


def _shard_in(folder: Path, name: str, index_file: Path) -> Path:
    """A shard named by the index: a plain file inside the checkpoint folder (no absolute path, no '..')."""
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts or "\x00" in name:
        raise CheckpointError(f"{index_file}: shard {name!r} is not a file name inside the checkpoint folder; "
                              "the index must name its shards relative to the folder")
    shard = folder / name
    if not os.path.lexists(shard):
        raise CheckpointError(f"{shard}: shard listed in {INDEX_NAME} is missing")
    _check_regular(shard)
    return shard


def _check_regular(file: Path) -> None:
    """A weight file must be a regular file (a symlink to one is fine): not a folder, a loop or a device."""
    try:
        st = os.stat(file)
    except OSError as exc:
        why = "a symlink loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        raise CheckpointError(f"{file}: cannot open this weight file ({why}); restore the shard") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{file}: is a folder, not a safetensors file")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{file}: not a regular file (a FIFO, socket or device); restore the shard")


def _tensor_names(file: Path) -> list[str]:
    try:
        with safe_open(str(file), framework="pt") as handle:
            return list(handle.keys())
    except Exception as exc:  # safetensors raises SafetensorError on truncated/corrupt headers
        raise CheckpointError(f"{file}: unreadable safetensors file ({exc})") from None


def expected_original_shapes(native_shapes: dict[str, tuple[int, ...]], table: tuple,
                             optional: tuple[str, ...] = ()) -> dict[str, tuple[int, ...]]:
    """Original tensor name -> shape, derived from the native model (fused tensors: concatenated rows).

    Native parameters whose original name is in ``optional`` (a tied output layer) are left out.
    """
    expected: dict[str, tuple[int, ...]] = {}
    for native_key, shape in native_shapes.items():
        original = original_key_for(native_key, table)
        if original is None:
            raise CheckpointError(f"internal: native parameter {native_key} has no original name in the key table")
        if original in optional:
            continue
        if original in expected and len(native_keys_for(original, table)) > 1:
            prev = expected[original]
            expected[original] = (prev[0] + shape[0],) + tuple(shape[1:])
        else:
            expected[original] = tuple(shape)
    return expected


def expected_tensors(located: dict[str, Path], native_shapes: dict[str, tuple[int, ...]],
                     cfg: OriginalConfig) -> dict[str, tuple[int, ...]]:
    """Original tensor name -> shape the config implies; every one stored, nothing else stored (else one line)."""
    adapter = cfg.adapter
    tied = adapter.tied(cfg.llm, located)
    expected = expected_original_shapes(native_shapes, adapter.full_table, optional=(adapter.lm_head,) if tied else ())
    for key in sorted(expected):
        if key not in located:
            where = INDEX_NAME if any(p.name != "model.safetensors" for p in located.values()) else "model.safetensors"
            folder = next(iter(located.values())).parent if located else Path(".")
            raise CheckpointError(f"{folder / where}: missing tensor {key} (expected shape {list(expected[key])})")
    for key, file in sorted(located.items()):
        if key not in expected:
            raise CheckpointError(f"{file}: unexpected tensor {key} (not part of an InternViT + "
                                  f"{adapter.arch.replace('ForCausalLM', '')} checkpoint with this config.json)")
    return expected


def keys_by_file(located: dict[str, Path]) -> dict[Path, list[str]]:
    return {file: [k for k, f in located.items() if f == file] for file in dict.fromkeys(located.values())}


def check_stored(file: Path, key: str, tensor_slice, expected_shape: tuple[int, ...]) -> None:
    """A stored tensor's dtype and shape, read from the safetensors header (no data read)."""
    if tensor_slice.get_dtype() not in WEIGHT_DTYPES:
        raise CheckpointError(f"{file}: tensor {key} is stored as {tensor_slice.get_dtype()}; the loader "
                              f"reads {', '.join(WEIGHT_DTYPES)} weights (convert the checkpoint)")
    shape = tuple(tensor_slice.get_shape())
    if shape != expected_shape:
        raise CheckpointError(f"{file}: tensor {key} has shape {list(shape)}, config.json implies "
                              f"{list(expected_shape)}")


def convert_state_dict(located: dict[str, Path], native_shapes: dict[str, tuple[int, ...]], cfg: OriginalConfig,
                       dtype: torch.dtype, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read, check and convert all tensors; returns the native state dict.

    Tied output layer (``llm_config.tie_word_embeddings`` and no ``lm_head`` in the file, see
    :meth:`LLMAdapter.tied`): both native names get the embedding tensor.
    """
    adapter = cfg.adapter
    table = adapter.full_table
    surgeries = {**VISION_SURGERIES, **adapter.surgeries}
    tied = adapter.tied(cfg.llm, located)
    expected = expected_tensors(located, native_shapes, cfg)
    state: dict[str, torch.Tensor] = {}
    for file, keys in keys_by_file(located).items():
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for key in keys:
                check_stored(file, key, handle.get_slice(key), expected[key])
                tensor = handle.get_tensor(key)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    bad = int((~torch.isfinite(tensor)).sum())
                    raise CheckpointError(f"{file}: tensor {key} holds {bad} NaN/inf value(s); the checkpoint is "
                                          "corrupt (re-download or re-convert it)")
                template, natives = match_original(key, table)
                parts = surgeries[template](tensor, cfg.llm) if len(natives) > 1 else (tensor,)
                for native_key, part in zip(natives, parts):
                    state[native_key] = part.to(device=device, dtype=dtype)
    if tied:
        state["lm_head.weight"] = state[NATIVE_LLM + "embed_tokens.weight"]
    elif adapter.tied(cfg.llm) and not torch.equal(state["lm_head.weight"], state[NATIVE_LLM + "embed_tokens.weight"]):
        logger.warning("%s: llm_config.tie_word_embeddings is true but the file stores a different %s; using the "
                       "stored output layer (untied)", located[adapter.lm_head], adapter.lm_head)
    return state


@dataclass
class CheckpointPlan:
    """What ``load_pretrained`` knows before it reads a weight: the config, the tokenizer, where each tensor is."""
    cfg: OriginalConfig
    tokenizer: object
    located: dict[str, Path]
    config: object               # the native InternVLConfig


def plan_checkpoint(path: str | Path, attn_implementation: str = "sdpa") -> CheckpointPlan:
    """config.json, the tokenizer (and that it fits the vocabulary), the shards and their tensor names, the native
    config: every check of loading that reads no weight. Raises a one-line ``CheckpointError``."""
    from minimonkey_eval.models.tokenizer import IMG_CONTEXT, TokenizerError, load_tokenizer

    path = Path(path)
    cfg = read_config(path)
    try:
        tokenizer = load_tokenizer(path, cfg.llm_arch)
    except TokenizerError as exc:
        raise CheckpointError(str(exc)) from None
    vocab = cfg.llm["vocab_size"]
    if len(tokenizer) > vocab:
        source = getattr(tokenizer, "source", None) or path / "tokenizer.model"
        raise CheckpointError(f"{source}: tokenizer has {len(tokenizer)} tokens but config.json "
                              f"llm_config.vocab_size is {vocab}; tokenizer and weights do not belong together")
    image_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    if not isinstance(image_token_id, int) or not 0 <= image_token_id < vocab:
        raise CheckpointError(f"{path}: the tokenizer gives {IMG_CONTEXT} the id {image_token_id!r}, outside "
                              f"llm_config.vocab_size {vocab}; tokenizer and weights do not belong together")
    located = safetensors_files(path)
    config = native_config(cfg, image_token_id, attn_implementation, stored_keys=located)
    return CheckpointPlan(cfg, tokenizer, located, config)


def check_checkpoint(path: str | Path, attn_implementation: str = "sdpa") -> dict:
    """The loader's checks without loading weights: :func:`plan_checkpoint`, then every stored tensor's name, dtype
    and shape against the config, read from the safetensors headers. Returns a summary (arch, template, tensors,
    shards, parameters, tokenizer size); raises a one-line ``CheckpointError`` naming the file."""
    from transformers import InternVLForConditionalGeneration

    plan = plan_checkpoint(path, attn_implementation)
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(plan.config)
    native_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = expected_tensors(plan.located, native_shapes, plan.cfg)
    for file, keys in keys_by_file(plan.located).items():
        with safe_open(str(file), framework="pt") as handle:
            for key in keys:
                check_stored(file, key, handle.get_slice(key), expected[key])
    return {"arch": plan.cfg.llm_arch, "template": plan.cfg.template, "tensors": len(plan.located),
            "shards": len(set(plan.located.values())), "parameters": sum(math.prod(s) for s in expected.values()),
            "tokenizer": len(plan.tokenizer), "vocab": plan.cfg.llm["vocab_size"]}


def load_pretrained(path: str | Path, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
                    attn_implementation: str = "sdpa"):
    """Load an original-format checkpoint: returns ``(model, tokenizer, original_config)``.

    The native model is built on the meta device and the converted tensors are assigned to it, so no random
    initialisation runs; the rotary embedding (a computed, non-persistent buffer) is rebuilt on the target device.
    """
    from transformers import InternVLForConditionalGeneration

    path = Path(path)
    plan = plan_checkpoint(path, attn_implementation)
    cfg, tokenizer, located, config = plan.cfg, plan.tokenizer, plan.located, plan.config
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    native_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = convert_state_dict(located, native_shapes, cfg, dtype=dtype, device=device)
    model.load_state_dict(state, strict=True, assign=True)
    language_model = model.model.language_model
    # The family's own rotary class (Llama / Qwen2 / Phi3 longrope), built from the text config on the real device.
    language_model.rotary_emb = type(language_model.rotary_emb)(config.text_config).to(device)
    leftovers = [name for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftovers:
        raise CheckpointError(f"{path}: internal: tensors left uninitialised after loading: {leftovers[:3]}")
    # inv_freq stays fp32 (as transformers and the official LLM code keep it); every weight is already in `dtype`.
    model.eval()
    return model, tokenizer, cfg
