"""Engine: batched generation equals batch size 1; SCM keeps the official number of tokens and the right ones."""
from __future__ import annotations

import torch
from helpers.images import text_image

from minimonkey_eval.models import ScmConfig, Tiling
from minimonkey_eval.models.scm import scm_keep_indices

SAMPLES = [
    ([text_image(800, 600, (30, 120, 200), "cat")],
     "What is written? Answer the question using a single word or phrase."),
    ([text_image(300, 900, (200, 40, 40), "12")], "How many?"),
    ([text_image(1200, 300, (10, 200, 90), "sign")], "Read the sign."),
    ([text_image(500, 500, (90, 90, 90), "a"), text_image(200, 400, (250, 250, 0), "b")],
     "<image-1>: <image> <image-2>: <image>\nCompare the images."),
    ([], "A question without an image."),
]


def test_batch_equals_batch_one(engine):
    tiling = Tiling.msac(4, 12, 3, 7)
    single = [engine.generate([s], tiling=tiling, max_new_tokens=6, batch_size=1)[0] for s in SAMPLES]
    batched = engine.generate(SAMPLES, tiling=tiling, max_new_tokens=6, batch_size=len(SAMPLES))
    assert batched == single
    assert len(set(single)) > 1  # the tiny model's answers depend on the input
    dyn = Tiling.dynamic(6)
    assert engine.generate(SAMPLES, tiling=dyn, max_new_tokens=4, batch_size=3) == \
        [engine.generate([s], tiling=dyn, max_new_tokens=4, batch_size=1)[0] for s in SAMPLES]


def test_batch_equals_batch_one_with_scm(engine):
    tiling = Tiling.msac(4, 12, 3, 7)
    samples = SAMPLES[:3]
    single = [engine.generate([s], tiling=tiling, max_new_tokens=5, scm=ScmConfig(), batch_size=1)[0] for s in samples]
    assert engine.generate(samples, tiling=tiling, max_new_tokens=5, scm=ScmConfig(), batch_size=3) == single


def test_scm_keeps_official_token_count(engine):
    prepared = engine.prepare(*SAMPLES[0], tiling=Tiling.msac(4, 12, 3, 7))
    embeds = engine.embed(prepared, engine.image_features(prepared.pixel_values))
    high = prepared.first_scale_tokens
    assert high % 256 == 0 and high > 0
    length = embeds.shape[0]
    kept = engine.apply_scm(prepared, embeds)
    assert kept.shape[0] == length - high + int(high * 0.5) - 1          # official: also drops token s+high
    fixed = engine.apply_scm(prepared, embeds, ScmConfig(fix_off_by_one=True))
    assert fixed.shape[0] == length - high + int(high * 0.5)
    quarter = engine.apply_scm(prepared, embeds, ScmConfig(ratio=0.25, fix_off_by_one=True))
    assert quarter.shape[0] == length - high + int(high * 0.25)


def test_scm_indices_match_full_eager_attention(engine):
    """Chunked SCM scores == the official computation: layer-1 eager attention probabilities over the full prompt."""
    lm = engine.model.model.language_model
    prepared = engine.prepare(*SAMPLES[2], tiling=Tiling.msac(4, 6, 2, 4))
    embeds = engine.embed(prepared, engine.image_features(prepared.pixel_values))
    start = prepared.input_ids.index(engine.img_context_id)
    high = prepared.first_scale_tokens
    ours = scm_keep_indices(lm, embeds, start, high, query_chunk=97)

    L = embeds.shape[0]
    x = embeds[None]
    pos = torch.arange(L)[None]
    cos_sin = lm.rotary_emb(x, pos)
    h = lm.layers[0](x, attention_mask=None, position_ids=pos, position_embeddings=cos_sin)
    h = h[0] if isinstance(h, tuple) else h
    attn = lm.layers[1].self_attn
    n = lm.layers[1].input_layernorm(h)
    q = attn.q_proj(n).view(1, L, -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(n).view(1, L, -1, attn.head_dim).transpose(1, 2)
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv
    q, k = apply_rotary_pos_emb(q, k, *cos_sin)
    k = repeat_kv(k, attn.num_key_value_groups)
    w = (q @ k.transpose(2, 3)) / attn.head_dim ** 0.5
    w = w.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), torch.finfo(w.dtype).min).softmax(-1)
    block = w[:, :, start + high:, start:start + high]
    top = block.mean(2).mean(1).topk(int(high * 0.5)).indices + start
    official = torch.cat([torch.arange(start), top.sort().values[0], torch.arange(start + high + 1, L)])
    assert torch.equal(ours, official)


def test_scm_changes_the_prompt_not_the_prefix(engine):
    prepared = engine.prepare(*SAMPLES[0], tiling=Tiling.msac(4, 12, 3, 7))
    embeds = engine.embed(prepared, engine.image_features(prepared.pixel_values))
    kept = engine.apply_scm(prepared, embeds)
    start = prepared.input_ids.index(engine.img_context_id)
    assert torch.equal(kept[:start], embeds[:start])
    assert torch.equal(kept[-20:], embeds[-20:])


def test_normalize_on_device_changes_nothing(engine):
    """uint8 tiles normalised inside image_features give the same answers as float32 tiles (CPU)."""
    tiling = Tiling.msac(2, 4, 1, 2)
    expected = engine.generate(SAMPLES, tiling=tiling, max_new_tokens=5, batch_size=2)
    engine.normalize_on_device = True
    try:
        assert engine.prepare(*SAMPLES[0], tiling).pixel_values.dtype == torch.uint8
        assert engine.generate(SAMPLES, tiling=tiling, max_new_tokens=5, batch_size=2) == expected
    finally:
        engine.normalize_on_device = False
