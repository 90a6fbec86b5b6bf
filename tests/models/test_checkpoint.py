"""Checkpoint conversion: an independent recomputation from the *original* fused weights, and strict loading errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from minimonkey_eval.models import CheckpointError, Engine, load_pretrained
from minimonkey_eval.models.checkpoint import ADAPTERS, native_keys_for, original_key_for


@pytest.fixture(scope="module")
def original(tiny_checkpoint):
    sd = {k: v.float() for k, v in load_file(str(tiny_checkpoint / "model.safetensors")).items()}
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    return sd, cfg


def _rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rope(x, positions, theta):
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    freqs = positions[:, None].float() * inv[None]
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos()[None, :, None], emb.sin()[None, :, None]
    half = torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + half * sin


def _internlm2_layer(sd, cfg, n, x):
    """One InternLM2 decoder layer written from the original modeling code's maths, using the fused wqkv."""
    t = cfg["llm_config"]
    D, H, Hkv = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"]
    d, G = D // H, H // Hkv
    p = f"language_model.model.layers.{n}."
    B, L, _ = x.shape
    h = _rms(x, sd[p + "attention_norm.weight"], t["rms_norm_eps"])
    qkv = (h @ sd[p + "attention.wqkv.weight"].T).view(B, L, Hkv, G + 2, d)
    q = qkv[..., :G, :].reshape(B, L, H, d)
    k = qkv[..., G, :]
    v = qkv[..., G + 1, :]
    pos = torch.arange(L)
    q, k = _rope(q, pos, t["rope_theta"]), _rope(k, pos, t["rope_theta"])
    k = k.repeat_interleave(G, dim=2)
    v = v.repeat_interleave(G, dim=2)
    scores = torch.einsum("blhd,bmhd->bhlm", q, k) / d ** 0.5
    scores = scores.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    attn = torch.einsum("bhlm,bmhd->blhd", scores.softmax(-1), v).reshape(B, L, D)
    x = x + attn @ sd[p + "attention.wo.weight"].T
    h = _rms(x, sd[p + "ffn_norm.weight"], t["rms_norm_eps"])
    ffn = (torch.nn.functional.silu(h @ sd[p + "feed_forward.w1.weight"].T) * (h @ sd[p + "feed_forward.w3.weight"].T))
    return x + ffn @ sd[p + "feed_forward.w2.weight"].T


def test_internlm2_layer_matches_original_maths(engine, original):
    sd, cfg = original
    lm = engine.model.model.language_model
    torch.manual_seed(1)
    x = torch.randn(2, 37, cfg["llm_config"]["hidden_size"])
    pos = torch.arange(37)[None].expand(2, -1)
    for n in range(cfg["llm_config"]["num_hidden_layers"]):
        out = lm.layers[n](x, attention_mask=None, position_ids=pos, position_embeddings=lm.rotary_emb(x, pos))
        out = out[0] if isinstance(out, tuple) else out
        assert torch.allclose(out, _internlm2_layer(sd, cfg, n, x), atol=1e-5, rtol=0), f"layer {n}"


def test_vit_layer_and_projector_match_original_maths(engine, original):
    sd, cfg = original
    v = cfg["vision_config"]
    V, heads = v["hidden_size"], v["num_attention_heads"]
    torch.manual_seed(2)
    x = torch.randn(1, 1025, V)
    p = "vision_model.encoder.layers.0."
    ln = lambda t, w, b: torch.nn.functional.layer_norm(t, (V,), sd[w], sd[b], v["layer_norm_eps"])  # noqa: E731
    h = ln(x, p + "norm1.weight", p + "norm1.bias")
    qkv = (h @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]).view(1, 1025, 3, heads, V // heads)
    q, k, val = qkv.unbind(2)
    a = (torch.einsum("blhd,bmhd->bhlm", q, k) / (V // heads) ** 0.5).softmax(-1)
    a = torch.einsum("bhlm,bmhd->blhd", a, val).reshape(1, 1025, V)
    x1 = x + (a @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]) * sd[p + "ls1"]
    h = ln(x1, p + "norm2.weight", p + "norm2.bias")
    mlp = torch.nn.functional.gelu(h @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
    expected = x1 + (mlp @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]) * sd[p + "ls2"]
    layer = engine.model.model.vision_tower.encoder.layer[0]
    out = layer(x)
    out = out[0] if isinstance(out, tuple) else out
    assert torch.allclose(out, expected, atol=1e-5)

    # Projector path: drop CLS, InternVL pixel_shuffle (ps v2), mlp1 — written from the original code.
    feats = torch.randn(2, 1025, V)
    grid = feats[:, 1:].reshape(2, 32, 32, V)
    n, w, hh, c = grid.shape
    s = grid.view(n, w, hh // 2, c * 2).permute(0, 2, 1, 3).contiguous()
    s = s.view(n, hh // 2, w // 2, c * 4).permute(0, 2, 1, 3).contiguous().reshape(2, 256, 4 * V)
    s = torch.nn.functional.layer_norm(s, (4 * V,), sd["mlp1.0.weight"], sd["mlp1.0.bias"], 1e-5)
    s = (torch.nn.functional.gelu(s @ sd["mlp1.1.weight"].T + sd["mlp1.1.bias"]) @ sd["mlp1.3.weight"].T
         + sd["mlp1.3.bias"])
    inner = engine.model.model
    ours = inner.multi_modal_projector(inner.pixel_shuffle(grid, 0.5).reshape(2, 256, 4 * V))
    assert torch.allclose(ours, s, atol=1e-5)


def test_key_table_round_trip(original):
    sd, _ = original
    table = ADAPTERS["InternLM2ForCausalLM"].full_table
    for key in sd:
        natives = native_keys_for(key, table)
        assert natives, key
        assert all(original_key_for(nk, table) == key for nk in natives)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _rewrite(ckpt, mutate):
    sd = load_file(str(ckpt / "model.safetensors"))
    mutate(sd)
    save_file(sd, str(ckpt / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("case, needle", [
    ("missing", "missing tensor language_model.model.layers.1.attention.wo.weight"),
    ("extra", "unexpected tensor vision_model.encoder.layers.0.attn.q_norm.weight"),
    ("shape", "tensor language_model.model.layers.0.attention.wqkv.weight has shape"),
])
def test_strict_tensor_errors(tiny_checkpoint, tmp_path, case, needle):
    ckpt = _copy(tiny_checkpoint, tmp_path / "ck")

    def mutate(sd):
        if case == "missing":
            del sd["language_model.model.layers.1.attention.wo.weight"]
        elif case == "extra":
            sd["vision_model.encoder.layers.0.attn.q_norm.weight"] = torch.ones(4)
        else:
            w = sd["language_model.model.layers.0.attention.wqkv.weight"]
            sd["language_model.model.layers.0.attention.wqkv.weight"] = w[:-16].contiguous()

    _rewrite(ckpt, mutate)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(ckpt, dtype=torch.float32)
    message = str(err.value)
    assert needle in message and "model.safetensors" in message and "\n" not in message


def test_sharded_checkpoint_loads_identically(tiny_checkpoint, tmp_path, engine):
    from minimonkey_eval.models.tiny_checkpoint import save_sharded

    ckpt = _copy(tiny_checkpoint, tmp_path / "sharded")
    sd = load_file(str(ckpt / "model.safetensors"))
    (ckpt / "model.safetensors").unlink()
    save_sharded(sd, ckpt, shards=3)
    model, _, _ = load_pretrained(ckpt, dtype=torch.float32)
    ref = engine.model.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    # A missing shard is named.
    next(iter(sorted(ckpt.glob("model-00002-*.safetensors")))).unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00003.safetensors"):
        load_pretrained(ckpt, dtype=torch.float32)


def test_config_and_file_errors(tiny_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        load_pretrained(tmp_path / "nope")
    ckpt = _copy(tiny_checkpoint, tmp_path / "ck")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["llm_config"]["architectures"] = ["MistralForCausalLM"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="MistralForCausalLM.*not supported"):
        load_pretrained(ckpt)
    cfg["llm_config"]["architectures"] = ["InternLM2ForCausalLM"]
    cfg["llm_config"]["vocab_size"] = 500
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="tokenizer has 1009 tokens but config.json"):
        load_pretrained(ckpt)
    ckpt2 = _copy(tiny_checkpoint, tmp_path / "pickle")
    (ckpt2 / "model.safetensors").rename(ckpt2 / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle checkpoints are not loaded"):
        load_pretrained(ckpt2)
    ckpt3 = _copy(tiny_checkpoint, tmp_path / "notok")
    (ckpt3 / "tokenizer.model").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.model: missing"):
        load_pretrained(ckpt3)


def test_cli_bad_checkpoint_is_one_line(tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    proc = subprocess.run([sys.executable, "-m", "minimonkey_eval.cli", "chat", "--model-path", str(tmp_path / "none"),
                           "--image", str(image), "--question", "hi"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_engine_from_pretrained_defaults(tiny_checkpoint):
    eng = Engine.from_pretrained(tiny_checkpoint, device="cpu")
    assert eng.dtype == torch.float32 and eng.device.type == "cpu"
    assert eng.eos_token_id == eng.tokenizer.convert_tokens_to_ids("<|im_end|>")
