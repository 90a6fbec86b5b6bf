"""Scale Compression Mechanism (SCM): drop the less-attended half of the first-scale image tokens.

Official procedure (Mini-Monkey ``modeling_minimonkey_chat.py``, ``use_scm=True``), for one sample:

1. run LLM layer 0 on the whole prompt, then take layer 1's attention probabilities (eager softmax in fp32, cast
   to the model dtype);
2. queries: every token after the first-scale block (``[s + high, L)``, where ``s`` is the first ``<IMG_CONTEXT>``
   position and ``high = grid1_area * 256``); keys: the first-scale block ``[s, s + high)``;
3. average over those queries, then over heads; keep the ``int(high * ratio)`` highest-scoring tokens, in order;
4. keep = ``[0, s)`` + kept + ``[s + high + 1, L)``. The official ``+ 1`` also drops the first token after the
   block (an off-by-one); it is reproduced by default, ``fix_off_by_one=True`` keeps that token.

Here only the scores that are needed are computed: layer 0 runs through the native (SDPA) attention, and layer 1's
probabilities are computed for the query rows after the block only, in chunks, never materialising the full
L x L matrix and never switching the model to eager attention.

SCM is plug-and-play on every LLM of the family: :func:`query_key_states` reads queries and keys from separate
``q_proj`` / ``k_proj`` (Llama for InternLM2, Qwen2 with its biases) or from Phi-3's fused ``qkv_proj``, and the
rotary embedding is applied by the function of the attention module's own modeling file (Phi-3's handles a
partial rotary dimension).
"""
from __future__ import annotations

import math
import sys

import torch
from transformers.models.llama.modeling_llama import repeat_kv

from minimonkey_eval.models.attention import EAGER, attention_of


def query_key_states(attn, normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-RoPE queries [B, H, L, d] and keys [B, Hkv, L, d] of one native attention module.

    Separate ``q_proj`` / ``k_proj`` (Llama, Qwen2; biases included), or Phi-3's fused ``qkv_proj`` whose output rows
    are all query heads, then the key heads, then the value heads.
    """
    batch, length = normed.shape[:2]
    head_dim = attn.head_dim
    if hasattr(attn, "qkv_proj"):
        q_rows = attn.config.num_attention_heads * head_dim
        k_rows = attn.config.num_key_value_heads * head_dim
        qkv = attn.qkv_proj(normed)
        q, k = qkv[..., :q_rows], qkv[..., q_rows:q_rows + k_rows]
    else:
        q, k = attn.q_proj(normed), attn.k_proj(normed)
    return (q.view(batch, length, -1, head_dim).transpose(1, 2), k.view(batch, length, -1, head_dim).transpose(1, 2))


def apply_rope(attn, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """RoPE exactly as the attention module's own forward applies it (its modeling file's ``apply_rotary_pos_emb``)."""
    return sys.modules[type(attn).__module__].apply_rotary_pos_emb(q, k, cos, sin)


def _layer_output(out):
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def scm_keep_indices(language_model, embeds: torch.Tensor, start: int, high: int, ratio: float = 0.5,
                     fix_off_by_one: bool = False, query_chunk: int = 256) -> torch.Tensor:
    """Indices (ascending) of the tokens of ``embeds`` [L, D] that SCM keeps.

    ``language_model`` is the native base text model (Llama / Qwen2 / Phi3: ``embed_tokens``, ``layers``,
    ``rotary_emb``).
    """
    length = embeds.shape[0]
    if high <= 0 or start + high > length:
        raise ValueError(f"SCM: first-scale block [{start}, {start + high}) does not fit a prompt of {length} tokens")
    device, dtype = embeds.device, embeds.dtype
    x = embeds.unsqueeze(0)
    position_ids = torch.arange(length, device=device).unsqueeze(0)
    cos, sin = language_model.rotary_emb(x, position_ids)
    mask = None
    # eager attention needs an explicit causal mask; SDPA/flash use is_causal
    if attention_of(language_model.config) == EAGER:
        mask = torch.full((length, length), torch.finfo(dtype).min, device=device, dtype=dtype).triu(1)[None, None]
    hidden = _layer_output(language_model.layers[0](x, attention_mask=mask, position_ids=position_ids,
                                                    position_embeddings=(cos, sin)))

    layer1 = language_model.layers[1]
    attn = layer1.self_attn
    normed = layer1.input_layernorm(hidden)
    head_dim = attn.head_dim
    q, k = query_key_states(attn, normed)
    q, k = apply_rope(attn, q, k, cos, sin)
    k = repeat_kv(k, attn.num_key_value_groups)
    root = math.sqrt(head_dim)

    q_start = start + high
    n_queries = length - q_start
    column_sums = torch.zeros(q.shape[1], high, dtype=torch.float32, device=device)
    key_pos = torch.arange(length, device=device)
    for lo in range(q_start, length, query_chunk):
        hi = min(lo + query_chunk, length)
        # Same arithmetic as the official eager attention: matmul in the model dtype, softmax in fp32, cast back.
        scores = torch.matmul(q[:, :, lo:hi], k.transpose(2, 3)) / root
        causal = key_pos[None, :] > torch.arange(lo, hi, device=device)[:, None]
        scores = scores.masked_fill(causal[None, None], torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)
        column_sums += probs[0, :, :, start:start + high].float().sum(dim=1)
    if n_queries > 0:
        per_head = (column_sums / n_queries).to(dtype)      # official: .mean(2) on the model-dtype tensor
    else:
        per_head = torch.full_like(column_sums, float("nan")).to(dtype)  # official: mean of an empty dim is NaN
    per_token = per_head.float().mean(dim=0).to(dtype)        # official: .mean(1)
    keep_n = int(high * ratio)
    top = per_token.topk(keep_n).indices + start
    kept = top.sort().values
    tail_start = min(start + high + (0 if fix_off_by_one else 1), length)     # official slice: empty at the end
    return torch.cat([torch.arange(start, device=device), kept, torch.arange(tail_start, length, device=device)])
