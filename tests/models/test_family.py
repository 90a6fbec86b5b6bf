"""The InternVL2 family through the same engine: Mini-InternVL2-1B (Qwen2, Hermes-2) and -4B (Phi-3, phi3-chat).

For each member, on its tiny original-format checkpoint: one decoder layer recomputed from the *original* weights
(written from the original modeling code's maths) matches the converted native model; the template's exact prompt
string and tokens; batch-N == batch-1; chat end to end; SCM; the loader's errors.
(InternVL2-2B / Mini-Monkey is covered by test_checkpoint.py, test_engine.py and test_tokenizer_prompt.py.)
"""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from helpers.images import text_image
from safetensors.torch import load_file, save_file

from minimonkey_eval.models import CheckpointError, Engine, ScmConfig, Tiling, load_pretrained
from minimonkey_eval.models.chat_template import INTERNVL2_SYSTEM_MESSAGE, build_query, get_template
from minimonkey_eval.models.checkpoint import ADAPTERS, SUPPORTED_LLMS, native_keys_for, original_key_for
from minimonkey_eval.models.registry import fixture_models
from minimonkey_eval.models.scm import scm_keep_indices
from minimonkey_eval.models.tiny_checkpoint import write_checkpoint
from minimonkey_eval.models.tokenizer import load_tokenizer

SYS = INTERNVL2_SYSTEM_MESSAGE


@pytest.fixture(scope="module", params=["1b", "4b"])
def member(request, tmp_path_factory):
    """(family key, checkpoint dir, fp32 engine, original tensors as float, config.json)."""
    ckpt = write_checkpoint(tmp_path_factory.mktemp(f"family_{request.param}") / "checkpoint", family=request.param)
    engine = Engine.from_pretrained(ckpt, dtype=torch.float32, device="cpu")
    sd = {k: v.float() for k, v in load_file(str(ckpt / "model.safetensors")).items()}
    return request.param, ckpt, engine, sd, json.loads((ckpt / "config.json").read_text())


@pytest.fixture(scope="module")
def phi3(tmp_path_factory):
    ckpt = write_checkpoint(tmp_path_factory.mktemp("phi3") / "checkpoint", family="4b")
    return ckpt, Engine.from_pretrained(ckpt, dtype=torch.float32, device="cpu")


# ---------------------------------------------------------------------------------------------------------------------
# One decoder layer, from the original weights
# ---------------------------------------------------------------------------------------------------------------------
def _rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rotate(x, inv_freq, positions, scale=1.0):
    """rotate_half RoPE (HF Qwen2 / InternVL phi3 convention) on [B, L, H, d]."""
    freqs = positions[:, None].float() * inv_freq[None]
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = (emb.cos() * scale)[None, :, None], (emb.sin() * scale)[None, :, None]
    d = x.shape[-1]
    return x * cos + torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1) * sin


def _attention(q, k, v, n_rep):
    B, L, H, d = q.shape
    k, v = k.repeat_interleave(n_rep, dim=2), v.repeat_interleave(n_rep, dim=2)
    scores = torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(d)
    scores = scores.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhlm,bmhd->blhd", scores.softmax(-1), v).reshape(B, L, H * d)


def _qwen2_layer(sd, t, n, x, positions):
    """Qwen2DecoderLayer (transformers 4.37 modeling_qwen2.py): q/k/v with biases, GQA, default RoPE."""
    p = f"language_model.model.layers.{n}."
    D, H, Hkv = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"]
    d = D // H
    B, L, _ = x.shape
    h = _rms(x, sd[p + "input_layernorm.weight"], t["rms_norm_eps"])
    proj = lambda name: h @ sd[p + f"self_attn.{name}.weight"].T + sd[p + f"self_attn.{name}.bias"]  # noqa: E731
    q, k, v = proj("q_proj").view(B, L, H, d), proj("k_proj").view(B, L, Hkv, d), proj("v_proj").view(B, L, Hkv, d)
    inv = 1.0 / t["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    q, k = _rotate(q, inv, positions), _rotate(k, inv, positions)
    x = x + _attention(q, k, v, H // Hkv) @ sd[p + "self_attn.o_proj.weight"].T
    h = _rms(x, sd[p + "post_attention_layernorm.weight"], t["rms_norm_eps"])
    mlp = torch.nn.functional.silu(h @ sd[p + "mlp.gate_proj.weight"].T) * (h @ sd[p + "mlp.up_proj.weight"].T)
    return x + mlp @ sd[p + "mlp.down_proj.weight"].T


def _phi3_layer(sd, t, n, x, positions):
    """Phi3DecoderLayer of InternVL's internvl/model/phi3/modeling_phi3.py: fused qkv_proj sliced q | k | v, the
    ``su`` rotary (short/long factors by max(position)+1 vs original_max_position_embeddings, cos/sin scaled by
    sqrt(1 + ln(s) / ln(original_max))), fused gate_up_proj chunked gate | up."""
    p = f"language_model.model.layers.{n}."
    D, H, Hkv = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"]
    d = D // H
    B, L, _ = x.shape
    h = _rms(x, sd[p + "input_layernorm.weight"], t["rms_norm_eps"])
    qkv = h @ sd[p + "self_attn.qkv_proj.weight"].T
    q = qkv[..., :H * d].view(B, L, H, d)
    k = qkv[..., H * d:H * d + Hkv * d].view(B, L, Hkv, d)
    v = qkv[..., H * d + Hkv * d:].view(B, L, Hkv, d)
    rs, original = t["rope_scaling"], t["original_max_position_embeddings"]
    factors = rs["long_factor"] if int(positions.max()) + 1 > original else rs["short_factor"]
    inv = 1.0 / (torch.tensor(factors) * t["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    s = t["max_position_embeddings"] / original
    scale = math.sqrt(1 + math.log(s) / math.log(original)) if s > 1 else 1.0
    q, k = _rotate(q, inv, positions, scale), _rotate(k, inv, positions, scale)
    x = x + _attention(q, k, v, H // Hkv) @ sd[p + "self_attn.o_proj.weight"].T
    h = _rms(x, sd[p + "post_attention_layernorm.weight"], t["rms_norm_eps"])
    gate, up = (h @ sd[p + "mlp.gate_up_proj.weight"].T).chunk(2, dim=-1)
    return x + (torch.nn.functional.silu(gate) * up) @ sd[p + "mlp.down_proj.weight"].T


def test_decoder_layers_match_original_maths(member):
    key, _, engine, sd, cfg = member
    t = cfg["llm_config"]
    reference = {"1b": _qwen2_layer, "4b": _phi3_layer}[key]
    lm = engine.model.model.language_model
    assert type(lm).__name__ == {"1b": "Qwen2Model", "4b": "Phi3Model"}[key]
    torch.manual_seed(1)
    x = torch.randn(2, 37, t["hidden_size"])
    # positions 0.. (Phi-3: short factors) and 5000.. (past original_max_position_embeddings=4096: long factors)
    for start in (0, 5000):
        positions = torch.arange(start, start + 37)
        pos = positions[None].expand(2, -1)
        for n in range(t["num_hidden_layers"]):
            out = lm.layers[n](x, attention_mask=None, position_ids=pos, position_embeddings=lm.rotary_emb(x, pos))
            out = out[0] if isinstance(out, tuple) else out
            expected = reference(sd, t, n, x, positions)
            assert torch.allclose(out, expected, atol=1e-5, rtol=0), (key, start, n, (out - expected).abs().max())


def test_output_layer_and_final_norm(member):
    key, _, engine, sd, cfg = member
    t = cfg["llm_config"]
    model = engine.model
    embed = sd["language_model.model.embed_tokens.weight"]
    assert torch.equal(model.model.language_model.embed_tokens.weight, embed)
    # Every member stores its own output layer: InternVL2-1B too (938M parameters; Qwen2-0.5B alone would tie it).
    assert not t["tie_word_embeddings"] and torch.equal(model.lm_head.weight, sd["language_model.lm_head.weight"])
    assert not torch.equal(model.lm_head.weight, embed)
    h = torch.randn(3, t["hidden_size"])
    expected = _rms(h, sd["language_model.model.norm.weight"], t["rms_norm_eps"]) @ model.lm_head.weight.T
    assert torch.allclose(model.lm_head(model.model.language_model.norm(h)), expected, atol=1e-5)


def test_key_tables_round_trip(member):
    key, _, engine, sd, cfg = member
    table = ADAPTERS[cfg["llm_config"]["architectures"][0]].full_table
    for name in sd:
        natives = native_keys_for(name, table)
        assert natives, name
        assert all(original_key_for(nk, table) == name for nk in natives)
    assert set(engine.model.state_dict()) >= {nk for name in sd for nk in native_keys_for(name, table)}


def test_untied_and_stored_output_layer(member, tmp_path):
    """tie false + stored lm_head: used as is; tie true + a stored lm_head: the stored one is used too."""
    key, ckpt, engine, sd, _ = member
    if key != "1b":
        pytest.skip("Qwen2 only")
    for flag in (False, True):
        copy = shutil.copytree(ckpt, tmp_path / f"untied_{flag}")
        cfg = json.loads((copy / "config.json").read_text())
        cfg["llm_config"]["tie_word_embeddings"] = flag
        (copy / "config.json").write_text(json.dumps(cfg))
        stored = load_file(str(copy / "model.safetensors"))
        head = torch.randn(stored["language_model.model.embed_tokens.weight"].shape).to(torch.bfloat16)
        stored["language_model.lm_head.weight"] = head
        save_file(stored, str(copy / "model.safetensors"), metadata={"format": "pt"})
        model, _, _ = load_pretrained(copy, dtype=torch.float32)
        assert torch.equal(model.lm_head.weight, head.float())
        assert torch.equal(model.model.language_model.embed_tokens.weight,
                           stored["language_model.model.embed_tokens.weight"].float())
    # tie true and no lm_head in the file (Qwen2-0.5B alone): the output layer is the embedding
    copy = shutil.copytree(ckpt, tmp_path / "tied")
    cfg = json.loads((copy / "config.json").read_text())
    cfg["llm_config"]["tie_word_embeddings"] = True
    (copy / "config.json").write_text(json.dumps(cfg))
    stored = load_file(str(copy / "model.safetensors"))
    del stored["language_model.lm_head.weight"]
    save_file(stored, str(copy / "model.safetensors"), metadata={"format": "pt"})
    model, _, _ = load_pretrained(copy, dtype=torch.float32)
    assert torch.equal(model.lm_head.weight, stored["language_model.model.embed_tokens.weight"].float())


# ---------------------------------------------------------------------------------------------------------------------
# Templates and tokens
# ---------------------------------------------------------------------------------------------------------------------
def test_prompt_strings_per_template():
    ctx = "<IMG_CONTEXT>" * 256
    # InternVL conversation.py: Hermes-2 (ChatML, sep <|im_end|>) and phi3-chat (sep <|end|>), MPT style, same SYS.
    assert build_query("What is shown?", [1], get_template("Hermes-2")) == (
        f"<|im_start|>system\n{SYS}<|im_end|><|im_start|>user\n<img>{ctx}</img>\nWhat is shown?<|im_end|>"
        "<|im_start|>assistant\n")
    assert build_query("What is shown?", [1], get_template("phi3-chat")) == (
        f"<|system|>\n{SYS}<|end|><|user|>\n<img>{ctx}</img>\nWhat is shown?<|end|><|assistant|>\n")
    assert build_query("Just text", [], get_template("phi3-chat")) == (
        f"<|system|>\n{SYS}<|end|><|user|>\nJust text<|end|><|assistant|>\n")
    assert (get_template("phi3-chat", "custom").render("q")
            == "<|system|>\ncustom<|end|><|user|>\nq<|end|><|assistant|>\n")
    assert get_template("Hermes-2").sep.strip() == "<|im_end|>" and get_template("phi3-chat").sep.strip() == "<|end|>"
    with pytest.raises(ValueError, match="supported: Hermes-2, internlm2-chat, phi3-chat"):
        get_template("vicuna_v1.1")


def test_engine_template_and_eos(member):
    key, _, engine, _, _ = member
    template, stop = {"1b": ("Hermes-2", "<|im_end|>"), "4b": ("phi3-chat", "<|end|>")}[key]
    assert engine.template.name == template
    assert engine.eos_token_id == engine.tokenizer.convert_tokens_to_ids(stop)   # official chat(): sep.strip() only
    eos, c = engine.eos_token_id, engine.tokenizer.convert_tokens_to_ids
    ok = engine.tokenizer.encode("ok", add_special_tokens=False)
    assert engine.decode([*ok, eos, *ok]) == "ok"
    # As the official slow tokenizers: only all_special_tokens are skipped; other added tokens stay in the text
    # (Llama joins them with spaces). The official chat() then splits at the separator.
    kept = {"1b": "<img>ok</img>", "4b": "<img> ok </img>"}[key]
    assert engine.tokenizer.decode([c("<img>"), *ok, c("</img>")]) == kept
    assert engine.tokenizer.decode([*ok, c("<|endoftext|>"), *ok]) == {"1b": "okok", "4b": "ok ok"}[key]  # skipped
    assert engine.decode([c("<img>"), *ok, c("</img>"), *ok, eos]) == kept + {"1b": "ok", "4b": " ok"}[key]


def test_qwen2_tokens(member):
    key, ckpt, engine, _, _ = member
    if key != "1b":
        pytest.skip("Qwen2 only")
    tok = engine.tokenizer
    assert type(tok.hf).__name__ == "Qwen2Tokenizer" and tok.bos_token_id is None
    c = tok.convert_tokens_to_ids
    n = len(json.loads((ckpt / "vocab.json").read_text()))
    # Qwen2's specials right after the BPE vocabulary, then InternVL's nine (as in 151643.. / 151646..)
    assert [c(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>")] == \
        list(range(n, n + 6))
    assert len(tok) == n + 12
    text = "<|im_start|>user\n<img><IMG_CONTEXT></img>\nWhat is it?<|im_end|><|im_start|>assistant\n"
    plain = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    assert tok.encode(text) == ([c("<|im_start|>")] + plain("user\n") + [c("<img>"), c("<IMG_CONTEXT>"), c("</img>")]
                                + plain("\nWhat is it?") + [c("<|im_end|>"), c("<|im_start|>")] + plain("assistant\n"))


def test_phi3_tokens(member):
    """Llama sentencepiece tokenizer as the official slow one: BOS, Phi-3's added tokens strip the whitespace on
    their right, no dummy prefix after an added token, and the lone '▁' the slow tokenizer puts before a leading
    added token that is not in all_special_tokens (checked against transformers 4.37.2's slow LlamaTokenizer)."""
    key, ckpt, engine, _, _ = member
    if key != "4b":
        pytest.skip("Phi-3 only")
    import sentencepiece as spm

    tok = engine.tokenizer
    sp = spm.SentencePieceProcessor(model_file=str(ckpt / "tokenizer.model"))
    n = sp.GetPieceSize()
    c = tok.convert_tokens_to_ids
    assert type(tok.hf).__name__ == "LlamaTokenizer" and tok.bos_token_id == 1
    assert [c(t) for t in ("<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>", "<img>")] == \
        [n, n + 1, n + 6, n + 7, n + 10, n + 11]
    assert len(tok) == n + 20
    mid = _sp_without_dummy_prefix(ckpt / "tokenizer.model").EncodeAsIds   # chunks after an added token
    text = "<|system|>\nSYS<|end|><|user|>\n<img><IMG_CONTEXT></img>\nWhat is it?<|end|><|assistant|>\n"
    expected = ([1, sp.PieceToId("\u2581"), c("<|system|>")] + mid("SYS") + [c("<|end|>"), c("<|user|>"), c("<img>"),
                c("<IMG_CONTEXT>"), c("</img>")] + mid("\nWhat is it?") + [c("<|end|>"), c("<|assistant|>")])
    assert tok.encode(text) == expected
    assert tok.encode("What is it?", add_special_tokens=False) == sp.EncodeAsIds("What is it?")  # dummy prefix at start
    assert tok.encode("<s>hi")[:2] == [1, 1]          # no lone '\u2581' before a token in all_special_tokens


def _sp_without_dummy_prefix(model_file):
    """The sentencepiece model as the slow legacy=False tokenizer loads it (``add_dummy_prefix`` off)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    proto.normalizer_spec.add_dummy_prefix = False
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------
SAMPLES = [
    ([text_image(800, 600, (30, 120, 200), "cat")],
     "What is written? Answer the question using a single word or phrase."),
    ([text_image(300, 900, (200, 40, 40), "12")], "How many?"),
    ([text_image(500, 500, (90, 90, 90), "a"), text_image(200, 400, (250, 250, 0), "b")],
     "Image-1: <image>\nImage-2: <image>\nCompare the images."),
    ([], "A question without an image."),
]


def test_batch_equals_batch_one(member):
    _, _, engine, _, _ = member
    tiling = Tiling.msac(2, 4, 1, 3)
    single = [engine.generate([s], tiling=tiling, max_new_tokens=5, batch_size=1)[0] for s in SAMPLES]
    assert engine.generate(SAMPLES, tiling=tiling, max_new_tokens=5, batch_size=len(SAMPLES)) == single
    assert len(set(single)) > 1  # the tiny model's answers depend on the input


def test_chat_end_to_end_and_scm(member):
    key, _, engine, _, _ = member
    image = text_image(640, 480, (10, 200, 90), "sign")
    answer = engine.chat([image], "Read the sign.", tiling=Tiling.dynamic(2), max_new_tokens=6)
    assert isinstance(answer, str)
    assert engine.chat([image], "Read the sign.", tiling=Tiling.msac(2, 4, 1, 2), max_new_tokens=4,
                       scm=ScmConfig()) == \
        engine.generate([([image], "Read the sign.")], tiling=Tiling.msac(2, 4, 1, 2), max_new_tokens=4,
                        scm=ScmConfig())[0]


def test_scm_on_fused_and_biased_qk_matches_full_eager_attention(member):
    """SCM scores from query_key_states (Qwen2 biases / Phi-3 fused qkv_proj) == layer-1 eager attention written
    from the original weights' layout."""
    key, _, engine, sd, cfg = member
    t = cfg["llm_config"]
    lm = engine.model.model.language_model
    prepared = engine.prepare([text_image(1200, 300, (10, 200, 90), "sign")], "Read the sign.",
                              tiling=Tiling.msac(4, 6, 2, 4))
    embeds = engine.embed(prepared, engine.image_features(prepared.pixel_values))
    start = prepared.input_ids.index(engine.img_context_id)
    high = prepared.first_scale_tokens
    ours = scm_keep_indices(lm, embeds, start, high, query_chunk=97)

    L = embeds.shape[0]
    x = embeds[None]
    pos = torch.arange(L)[None]
    h = lm.layers[0](x, attention_mask=None, position_ids=pos, position_embeddings=lm.rotary_emb(x, pos))
    h = h[0] if isinstance(h, tuple) else h
    p = "language_model.model.layers.1."
    D, H, Hkv = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"]
    d = D // H
    n = _rms(h, sd[p + "input_layernorm.weight"], t["rms_norm_eps"])
    if key == "1b":
        q = n @ sd[p + "self_attn.q_proj.weight"].T + sd[p + "self_attn.q_proj.bias"]
        k = n @ sd[p + "self_attn.k_proj.weight"].T + sd[p + "self_attn.k_proj.bias"]
        inv, scale = 1.0 / t["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d), 1.0
    else:
        qkv = n @ sd[p + "self_attn.qkv_proj.weight"].T
        q, k = qkv[..., :H * d], qkv[..., H * d:(H + Hkv) * d]
        rs, original = t["rope_scaling"], t["original_max_position_embeddings"]
        factors = torch.tensor(rs["long_factor"] if L > original else rs["short_factor"])
        inv = 1.0 / (factors * t["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        s = t["max_position_embeddings"] / original
        scale = math.sqrt(1 + math.log(s) / math.log(original))
    q = _rotate(q.view(1, L, H, d), inv, pos[0], scale)
    k = _rotate(k.view(1, L, Hkv, d), inv, pos[0], scale).repeat_interleave(H // Hkv, dim=2)
    w = torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(d)
    w = w.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), torch.finfo(w.dtype).min).softmax(-1)
    top = w[:, :, start + high:, start:start + high].mean(2).mean(1).topk(int(high * 0.5)).indices + start
    official = torch.cat([torch.arange(start), top.sort().values[0], torch.arange(start + high + 1, L)])
    assert torch.equal(ours, official)


def test_longrope_rows_that_would_switch_early_are_rerun(phi3):
    """Phi-3's long factors apply to a whole forward once the *batch's* longest sequence passes 4096 tokens; rows
    that would switch at a different step than alone are generated again on their own."""
    _, engine = phi3
    eos = engine.eos_token_id
    rows = [[5] * 8, [5] * 8, [5, eos, eos, eos, eos, eos, eos, eos], [5] * 8]
    # batch: longest 4200, so every step is long. Alone: 4200 long throughout (no rerun); 4094 short at steps 0-2
    # (rerun); 4094 stopping after 2 tokens: short at both (rerun); 4000: short for all 8 steps (rerun).
    lengths = [4200, 4094, 4094, 4000]
    assert engine._rows_to_rerun_alone(lengths, rows) == [1, 2, 3]
    assert engine._rows_to_rerun_alone([4000, 3990], [[5] * 8, [5] * 8]) == []          # nobody passes 4096
    assert engine._rows_to_rerun_alone([4100, 4200], [[5] * 8, [5] * 8]) == []          # all long from the start
    assert engine._rows_to_rerun_alone([4090, 4093], [[5] * 8, [5, eos] + [eos] * 6]) == [0]


def test_batch_across_4096_equals_batch_one(phi3):
    """Prompts on both sides of original_max_position_embeddings (4096) in one batch give batch-1 answers."""
    from minimonkey_eval.models.engine import left_pad

    _, engine = phi3
    samples = [([text_image(2000, 2000, (200, 40, 40), "12")], "How many?"),          # 17 tiles: 4377 tokens
               ([text_image(800, 600, (30, 120, 200), "cat")], "What is written?"),    # 13 tiles
               ([], "Hello there?")]
    tiling = Tiling.dynamic(24)
    prepared = [engine.prepare(*s, tiling=tiling) for s in samples]
    lengths = [len(p.input_ids) for p in prepared]
    assert lengths[0] > 4096 > lengths[1] > lengths[2]
    single = [engine.generate([s], tiling=tiling, max_new_tokens=4, batch_size=1)[0] for s in samples]
    assert engine.generate(samples, tiling=tiling, max_new_tokens=4, batch_size=3) == single
    # Without the re-run, the text-only row would get the long factors in the batch and answer differently.
    embeds = [engine.embed(p, engine.image_features(p.pixel_values) if p.pixel_values is not None else None)
              for p in prepared]
    naive = engine._generate(*left_pad(embeds), 4, False)
    assert engine.decode(naive[2]) != single[2]
    assert engine._rows_to_rerun_alone(lengths, naive.tolist()) == [1, 2]


# ---------------------------------------------------------------------------------------------------------------------
# Loader and fixtures
# ---------------------------------------------------------------------------------------------------------------------
def test_unsupported_architecture_is_one_line(member, tmp_path):
    _, ckpt, _, _, _ = member
    copy = shutil.copytree(ckpt, tmp_path / "mistral")
    cfg = json.loads((copy / "config.json").read_text())
    cfg["llm_config"]["architectures"] = ["MistralForCausalLM"]
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as err:
        load_pretrained(copy)
    message = str(err.value)
    assert "\n" not in message
    assert message.endswith("llm_config.architectures 'MistralForCausalLM' is not supported; supported: "
                            "InternLM2ForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM")
    assert SUPPORTED_LLMS == ("InternLM2ForCausalLM", "Qwen2ForCausalLM", "Phi3ForCausalLM")


def test_strict_errors_name_the_tensor_and_the_file(member, tmp_path):
    key, ckpt, _, _, _ = member
    copy = shutil.copytree(ckpt, tmp_path / "broken")
    stored = load_file(str(copy / "model.safetensors"))
    name = {"1b": "language_model.model.layers.1.self_attn.k_proj.bias",
            "4b": "language_model.model.layers.1.self_attn.qkv_proj.weight"}[key]
    del stored[name]
    save_file(stored, str(copy / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"model.safetensors: missing tensor {name}"):
        load_pretrained(copy)
    (copy / ("vocab.json" if key == "1b" else "tokenizer.model")).unlink()
    with pytest.raises(CheckpointError, match="vocab.json: missing" if key == "1b" else "tokenizer.model: missing"):
        load_pretrained(copy)


def test_phi3_rope_types(phi3, tmp_path):
    """``su`` and ``longrope`` are the same; InternVL's phi3 ``yarn`` is longrope with cos/sin x (0.1 ln s + 1)."""
    from minimonkey_eval.models.checkpoint import phi3_rope_parameters

    ckpt, _ = phi3
    t = json.loads((ckpt / "config.json").read_text())["llm_config"]
    su = phi3_rope_parameters(t)
    assert su["rope_type"] == "longrope" and su["original_max_position_embeddings"] == 4096
    assert su["attention_factor"] == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))
    assert phi3_rope_parameters({**t, "rope_scaling": {**t["rope_scaling"], "type": "longrope"}}) == su
    yarn = phi3_rope_parameters({**t, "rope_scaling": {**t["rope_scaling"], "type": "yarn"}})
    assert yarn["attention_factor"] == pytest.approx(0.1 * math.log(32) + 1)
    copy = shutil.copytree(ckpt, tmp_path / "dyn")
    cfg = json.loads((copy / "config.json").read_text())
    cfg["llm_config"]["rope_scaling"] = {"type": "dynamic", "factor": 2.0}
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="rope_scaling type 'dynamic' is not supported for Phi-3"):
        load_pretrained(copy)


def test_load_tokenizer_reads_the_architecture(member):
    key, ckpt, _, _, _ = member
    tok = load_tokenizer(ckpt)
    assert tok.kind == {"1b": "qwen2", "4b": "llama"}[key]


def test_make_fixtures_family_all(tmp_path):
    from minimonkey_eval.cli import main

    assert main(["make-fixtures", "--out", str(tmp_path), "--family", "all", "--no-data"]) == 0
    for key, name in fixture_models().items():
        cfg = json.loads((tmp_path / key / "checkpoint" / "config.json").read_text())
        arch = {"1b": "Qwen2ForCausalLM", "2b": "InternLM2ForCausalLM", "4b": "Phi3ForCausalLM"}[key]
        assert cfg["llm_config"]["architectures"] == [arch], name
        assert cfg["template"] == {"1b": "Hermes-2", "2b": "internlm2-chat", "4b": "phi3-chat"}[key]


@pytest.mark.slow
def test_demo_family_all_runs_every_member_and_reports_them(tmp_path):
    """`minimonkey-eval demo --family all`: every family member, MSAC off and on, lands in the report."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "minimonkey_eval.cli", "demo", "--out", str(tmp_path / "d"),
                           "--family", "all", "--data", "MME", "--rows", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "d" / "report" / "report.md").read_text()
    for run in ("MiniMonkey", "InternVL2-2B", "InternVL2-2B_msac", "Mini-InternVL2-1B", "Mini-InternVL2-1B_msac",
                "Mini-InternVL2-4B", "Mini-InternVL2-4B_msac"):
        assert (tmp_path / "d" / run / "summary.csv").is_file(), run
        assert f"measured: {run} |" in report, run
    assert "Mini-InternVL2-4B: MSAC on − off" in report
