"""Key tables of the checkpoint conversion: original tensor name <-> native transformers name, read both ways.

``{n}`` is a layer number; an entry with several native names is a tensor surgery (``checkpoint``'s
:func:`~minimonkey_eval.models.checkpoint.split_internlm2_wqkv`, ``split_vit_qkv``). Pure data + lookup.
"""
from __future__ import annotations

import re
from functools import lru_cache

VIT = "vision_model."
NATIVE_VIT = "model.vision_tower."
LLM = "language_model.model."
NATIVE_LLM = "model.language_model."
LM_HEAD = "language_model.lm_head.weight"       # Qwen2 / Phi3 / Llama output layer (InternLM2 calls it `output`)

VISION_KEY_TABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    # InternViT -> InternVLVisionModel
    (VIT + "embeddings.class_embedding", (NATIVE_VIT + "embeddings.cls_token",)),
    (VIT + "embeddings.patch_embedding.weight", (NATIVE_VIT + "embeddings.patch_embeddings.projection.weight",)),
    (VIT + "embeddings.patch_embedding.bias", (NATIVE_VIT + "embeddings.patch_embeddings.projection.bias",)),
    (VIT + "embeddings.position_embedding", (NATIVE_VIT + "embeddings.position_embeddings",)),
    (VIT + "encoder.layers.{n}.attn.qkv.weight",
     tuple(NATIVE_VIT + f"encoder.layer.{{n}}.attention.{p}_proj.weight" for p in "qkv")),
    (VIT + "encoder.layers.{n}.attn.qkv.bias",
     tuple(NATIVE_VIT + f"encoder.layer.{{n}}.attention.{p}_proj.bias" for p in "qkv")),
    (VIT + "encoder.layers.{n}.attn.proj.weight",
     (NATIVE_VIT + "encoder.layer.{n}.attention.projection_layer.weight",)),
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
)

# InternLM2 -> Llama (renames + the fused, per-KV-group wqkv).
INTERNLM2_KEY_TABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    (LLM + "tok_embeddings.weight", (NATIVE_LLM + "embed_tokens.weight",)),
    (LLM + "layers.{n}.attention.wqkv.weight",
     tuple(NATIVE_LLM + f"layers.{{n}}.self_attn.{p}_proj.weight" for p in "qkv")),
    (LLM + "layers.{n}.attention.wo.weight", (NATIVE_LLM + "layers.{n}.self_attn.o_proj.weight",)),
    (LLM + "layers.{n}.feed_forward.w1.weight", (NATIVE_LLM + "layers.{n}.mlp.gate_proj.weight",)),
    (LLM + "layers.{n}.feed_forward.w3.weight", (NATIVE_LLM + "layers.{n}.mlp.up_proj.weight",)),
    (LLM + "layers.{n}.feed_forward.w2.weight", (NATIVE_LLM + "layers.{n}.mlp.down_proj.weight",)),
    (LLM + "layers.{n}.attention_norm.weight", (NATIVE_LLM + "layers.{n}.input_layernorm.weight",)),
    (LLM + "layers.{n}.ffn_norm.weight", (NATIVE_LLM + "layers.{n}.post_attention_layernorm.weight",)),
    (LLM + "norm.weight", (NATIVE_LLM + "norm.weight",)),
    ("language_model.output.weight", ("lm_head.weight",)),
)


def _same_names(*layer_params: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Key table of an LLM whose original names already are transformers' names (InternVL saves the HF model as
    is): ``language_model.model.X`` -> ``model.language_model.X`` and ``language_model.lm_head.weight`` ->
    ``lm_head.weight``."""
    per_layer = tuple((LLM + f"layers.{{n}}.{p}", (NATIVE_LLM + f"layers.{{n}}.{p}",)) for p in layer_params)
    return ((LLM + "embed_tokens.weight", (NATIVE_LLM + "embed_tokens.weight",)), *per_layer,
            (LLM + "norm.weight", (NATIVE_LLM + "norm.weight",)), (LM_HEAD, ("lm_head.weight",)))


# Qwen2 (Mini-InternVL2-1B: Qwen2-0.5B-Instruct): separate q/k/v with biases, GQA.
QWEN2_KEY_TABLE = _same_names(
    "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
    "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
    "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
    "input_layernorm.weight", "post_attention_layernorm.weight",
)
# Phi3 (Mini-InternVL2-4B: Phi-3-mini-128k-instruct): fused qkv_proj and gate_up_proj, which native Phi3 keeps fused.
PHI3_KEY_TABLE = _same_names(
    "self_attn.qkv_proj.weight", "self_attn.o_proj.weight", "mlp.gate_up_proj.weight", "mlp.down_proj.weight",
    "input_layernorm.weight", "post_attention_layernorm.weight",
)

def _pattern(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{n\}", r"(?P<n>\d+)") + "$")


@lru_cache(maxsize=None)
def _compiled(table: tuple) -> tuple[list, list]:
    forward = [(_pattern(orig), orig, natives) for orig, natives in table]
    reverse = [(_pattern(native), orig, natives, i) for orig, natives in table for i, native in enumerate(natives)]
    return forward, reverse


def match_original(original_key: str, table: tuple) -> tuple[str, tuple[str, ...]] | None:
    """(template, native names) of an original tensor, or None."""
    for regex, orig, natives in _compiled(table)[0]:
        match = regex.match(original_key)
        if match:
            n = match.groupdict().get("n")
            return orig, tuple(t.replace("{n}", n) if n is not None else t for t in natives)
    return None


def native_keys_for(original_key: str, table: tuple) -> tuple[str, ...] | None:
    """Native names an original tensor maps to (several for fused tensors); None if the key is not in the table."""
    found = match_original(original_key, table)
    return found[1] if found else None


def original_key_for(native_key: str, table: tuple) -> str | None:
    """The original tensor a native parameter comes from."""
    for regex, orig, _, _ in _compiled(table)[1]:
        match = regex.match(native_key)
        if match:
            n = match.groupdict().get("n")
            return orig.replace("{n}", n) if n is not None else orig
    return None
