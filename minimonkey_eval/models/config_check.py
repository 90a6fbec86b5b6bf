"""Shape and type checks for every ``config.json`` field the loader reads (valid JSON of the wrong shape is one line).

``check_original_config(raw, path)`` raises ``CheckpointError`` naming the field, what it holds and what is expected.
Bounds are generous caps (no real InternVL2 model comes near them) so a typo cannot make the loader build a model of
absurd size.
"""
from __future__ import annotations

import math

from minimonkey_eval.errors import UserFacingError

MAX_DIM = 1 << 16          # hidden / intermediate sizes, heads
MAX_LAYERS = 1024
MAX_VOCAB = 1 << 24
MAX_POSITIONS = 1 << 24


class ConfigShapeError(UserFacingError):
    """A config.json field of the wrong type or out of range."""


def _describe(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, field: str, value, expected: str):
        raise ConfigShapeError(f"{self.path}: {field} is {_describe(value)}, expected {expected}")

    def integer(self, d: dict, key: str, prefix: str, lo: int, hi: int, required: bool = False,
                nullable: bool = False):
        if key not in d:
            if required:
                raise ConfigShapeError(f"{self.path}: {prefix}{key} is missing (an integer {lo}..{hi})")
            return
        v = d[key]
        if v is None and nullable:
            return
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            self.fail(prefix + key, v, f"an integer {lo}..{hi}")

    def number(self, d: dict, key: str, prefix: str, lo: float, hi: float, lo_open: bool = False):
        if key not in d or d[key] is None:
            return
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
                not (lo < v if lo_open else lo <= v) or v > hi:
            self.fail(prefix + key, v, f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]")

    def boolean(self, d: dict, key: str, prefix: str):
        if key in d and d[key] is not None and not isinstance(d[key], bool):
            self.fail(prefix + key, d[key], "true or false")

    def string(self, d: dict, key: str, prefix: str, nullable: bool = True):
        if key in d and not (isinstance(d[key], str) or (nullable and d[key] is None)):
            self.fail(prefix + key, d[key], "a string")


def check_original_config(raw, path) -> None:
    """Every field ``read_config`` / ``native_config`` / the adapters read, checked for type and range."""
    c = _Checker(path)
    if not isinstance(raw, dict):
        raise ConfigShapeError(f"{path}: holds a JSON {type(raw).__name__}, expected an object "
                               "(InternVLChatConfig format)")
    for key in ("vision_config", "llm_config"):
        if not isinstance(raw.get(key), dict):
            raise ConfigShapeError(f"{path}: needs '{key}' as an object (InternVLChatConfig format); got "
                                   f"{_describe(raw.get(key)) if key in raw else 'nothing'}")
    if "ps_version" not in raw:
        raise ConfigShapeError(f"{path}: no ps_version; the official default is 'v1' (another pixel shuffle, not "
                               "supported here): add \"ps_version\": \"v2\" only if the model was trained with v2")
    c.string(raw, "ps_version", "", nullable=False)
    c.number(raw, "downsample_ratio", "", 0.0, 1.0, lo_open=True)
    c.integer(raw, "select_layer", "", -MAX_LAYERS, MAX_LAYERS)
    c.integer(raw, "force_image_size", "", 14, 8192, nullable=True)
    c.string(raw, "template", "")
    c.string(raw, "system_message", "")
    v = raw["vision_config"]
    p = "vision_config."
    for key in ("hidden_size", "num_attention_heads", "intermediate_size"):
        c.integer(v, key, p, 1, MAX_DIM, required=True)
    c.integer(v, "num_hidden_layers", p, 1, MAX_LAYERS, required=True)
    c.integer(v, "image_size", p, 14, 8192)
    c.integer(v, "patch_size", p, 1, 1024)
    c.integer(v, "num_channels", p, 1, 4)
    c.number(v, "layer_norm_eps", p, 0.0, 1.0, lo_open=True)
    c.number(v, "initializer_factor", p, -1e6, 1e6)
    for key in ("qkv_bias", "qk_normalization"):
        c.boolean(v, key, p)
    c.string(v, "hidden_act", p, nullable=False)
    if v.get("norm_type", "rms_norm") not in ("rms_norm", "layer_norm"):
        c.fail(p + "norm_type", v.get("norm_type"), "'rms_norm' or 'layer_norm'")
    if v["hidden_size"] % v["num_attention_heads"]:
        c.fail(p + "hidden_size", v["hidden_size"], f"a multiple of num_attention_heads ({v['num_attention_heads']})")
    image_size = raw.get("force_image_size") or v.get("image_size", 448)
    if image_size % v.get("patch_size", 14):
        c.fail("force_image_size / vision_config.image_size", image_size, "a multiple of the patch size")
    t = raw["llm_config"]
    p = "llm_config."
    archs = t.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        c.fail(p + "architectures", archs, "a list naming the LLM class, e.g. ['InternLM2ForCausalLM']")
    c.integer(t, "vocab_size", p, 1, MAX_VOCAB, required=True)
    for key in ("hidden_size", "intermediate_size", "num_attention_heads"):
        c.integer(t, key, p, 1, MAX_DIM, required=True)
    c.integer(t, "num_hidden_layers", p, 1, MAX_LAYERS, required=True)
    c.integer(t, "num_key_value_heads", p, 1, MAX_DIM, nullable=True)
    for key in ("max_position_embeddings", "original_max_position_embeddings", "max_window_layers"):
        c.integer(t, key, p, 1, MAX_POSITIONS, nullable=True)
    c.integer(t, "sliding_window", p, 1, 1 << 30, nullable=True)
    for key in ("bos_token_id", "pad_token_id"):
        c.integer(t, key, p, 0, MAX_VOCAB, nullable=True)
    eos = t.get("eos_token_id")
    if eos is not None and not (isinstance(eos, int) and not isinstance(eos, bool)) and \
            not (isinstance(eos, list) and eos and all(isinstance(x, int) and not isinstance(x, bool) for x in eos)):
        c.fail(p + "eos_token_id", eos, "an integer or a list of integers")
    c.number(t, "rope_theta", p, 0.0, 1e12, lo_open=True)
    c.number(t, "rms_norm_eps", p, 0.0, 1.0, lo_open=True)
    c.number(t, "partial_rotary_factor", p, 0.0, 1.0, lo_open=True)
    for key in ("tie_word_embeddings", "bias", "use_sliding_window"):
        c.boolean(t, key, p)
    c.string(t, "hidden_act", p, nullable=False)
    heads, kv = t["num_attention_heads"], t.get("num_key_value_heads") or t["num_attention_heads"]
    if t["hidden_size"] % heads:
        c.fail(p + "hidden_size", t["hidden_size"], f"a multiple of num_attention_heads ({heads})")
    if heads % kv:
        c.fail(p + "num_key_value_heads", kv, f"a divisor of num_attention_heads ({heads})")
    _check_rope(c, t, heads)


def _check_rope(c: _Checker, t: dict, heads: int) -> None:
    p = "llm_config.rope_scaling"
    rs = t.get("rope_scaling")
    if rs is None:
        return
    if not isinstance(rs, dict):
        c.fail(p, rs, "an object such as {\"type\": \"dynamic\", \"factor\": 2.0} or null")
    kind = rs.get("type", rs.get("rope_type"))
    if not isinstance(kind, str):
        c.fail(p + ".type", kind, "a string")
    if kind in ("su", "longrope", "yarn"):
        if kind != "yarn" and not t.get("original_max_position_embeddings") and \
                not rs.get("original_max_position_embeddings"):
            raise ConfigShapeError(f"{c.path}: llm_config.rope_scaling type {kind!r} needs "
                                   "llm_config.original_max_position_embeddings (the length where the long factors "
                                   "start; Phi-3-mini-128k: 4096)")
        half = t["hidden_size"] // heads // 2
        for key in ("short_factor", "long_factor"):
            f = rs.get(key)
            if not isinstance(f, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                  and math.isfinite(x) and x > 0 for x in f):
                c.fail(f"{p}.{key}", f, "a list of positive numbers")
            if len(f) != half:
                c.fail(f"{p}.{key}", f, f"{half} numbers (head_dim / 2), not {len(f)}")
    elif "factor" in rs:
        c.number(rs, "factor", p + ".", 0.0, 1e6, lo_open=True)
