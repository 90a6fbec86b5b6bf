"""Every ``config.json`` field the loader reads (``models/config_check.py``), at the ends of its range and with values
of the wrong type: each refusal is the exact one line naming the field, what it holds and what is expected; each
value inside the range passes. The tables below restate the documented limits (a change to a limit fails here)."""
from __future__ import annotations

import copy
import math

import pytest

from minimonkey_eval.models.config_check import ConfigShapeError, check_original_config
from minimonkey_eval.models.tiny_checkpoint import TINY_LLM, TINY_VISION, original_config

PATH = "ck/config.json"
MAX_DIM, MAX_LAYERS, MAX_VOCAB, MAX_POS = 1 << 16, 1024, 1 << 24, 1 << 24


def base(family: str = "2b") -> dict:
    return original_config(dict(TINY_VISION), dict(TINY_LLM), 1000, family=family)


def section(cfg: dict, where: str) -> dict:
    return cfg if where == "" else cfg[where]


def prefix(where: str) -> str:
    return "" if where == "" else where + "."


def message(cfg: dict) -> str | None:
    try:
        check_original_config(cfg, PATH)
    except ConfigShapeError as exc:
        return str(exc)
    return None


def with_value(where: str, key: str, value, family: str = "2b") -> dict:
    cfg = base(family)
    section(cfg, where)[key] = value
    return cfg


def test_the_tiny_configs_pass():
    for family in ("2b", "1b", "4b"):
        assert message(base(family)) is None, family


# (section, key, lo, hi, required, nullable)
INTEGERS = [
    ("", "select_layer", -MAX_LAYERS, MAX_LAYERS, False, False),
    ("", "force_image_size", 14, 8192, False, True),
    ("vision_config", "hidden_size", 1, MAX_DIM, True, False),
    ("vision_config", "num_attention_heads", 1, MAX_DIM, True, False),
    ("vision_config", "intermediate_size", 1, MAX_DIM, True, False),
    ("vision_config", "num_hidden_layers", 1, MAX_LAYERS, True, False),
    ("vision_config", "image_size", 14, 8192, False, False),
    ("vision_config", "patch_size", 1, 1024, False, False),
    ("vision_config", "num_channels", 1, 4, False, False),
    ("llm_config", "vocab_size", 1, MAX_VOCAB, True, False),
    ("llm_config", "hidden_size", 1, MAX_DIM, True, False),
    ("llm_config", "intermediate_size", 1, MAX_DIM, True, False),
    ("llm_config", "num_attention_heads", 1, MAX_DIM, True, False),
    ("llm_config", "num_hidden_layers", 1, MAX_LAYERS, True, False),
    ("llm_config", "num_key_value_heads", 1, MAX_DIM, False, True),
    ("llm_config", "max_position_embeddings", 1, MAX_POS, False, True),
    ("llm_config", "original_max_position_embeddings", 1, MAX_POS, False, True),
    ("llm_config", "max_window_layers", 1, MAX_POS, False, True),
    ("llm_config", "sliding_window", 1, 1 << 30, False, True),
    ("llm_config", "bos_token_id", 0, MAX_VOCAB, False, True),
    ("llm_config", "pad_token_id", 0, MAX_VOCAB, False, True),
]


@pytest.mark.parametrize("where, key, lo, hi, required, nullable", INTEGERS, ids=[f"{w}.{k}" for w, k, *_ in INTEGERS])
def test_integer_fields(where, key, lo, hi, required, nullable):
    field, expected = prefix(where) + key, f"an integer {lo}..{hi}"
    for bad, shown in ((lo - 1, f"int {lo - 1}"), (hi + 1, f"int {hi + 1}"), (True, "bool True"),
                       (float(lo + 1), f"float {float(lo + 1)!r}"), (str(lo + 1), f"str '{lo + 1}'")):
        assert message(with_value(where, key, bad)) == f"{PATH}: {field} is {shown}, expected {expected}", bad
    for good in (lo, hi):
        got = message(with_value(where, key, good))
        assert got is None or expected not in got, (good, got)   # another check may refuse it (divisibility)
    none = message(with_value(where, key, None))
    assert none is None if nullable else none == f"{PATH}: {field} is NoneType None, expected {expected}"
    cfg = base()
    section(cfg, where).pop(key, None)
    missing = message(cfg)
    assert missing == f"{PATH}: {field} is missing ({expected})" if required else missing is None


# (section, key, lo, hi, lo_open)
NUMBERS = [
    ("", "downsample_ratio", 0.0, 1.0, True),
    ("vision_config", "layer_norm_eps", 0.0, 1.0, True),
    ("vision_config", "initializer_factor", -1e6, 1e6, False),
    ("llm_config", "rope_theta", 0.0, 1e12, True),
    ("llm_config", "rms_norm_eps", 0.0, 1.0, True),
    ("llm_config", "partial_rotary_factor", 0.0, 1.0, True),
]


@pytest.mark.parametrize("where, key, lo, hi, lo_open", NUMBERS, ids=[f"{w}.{k}" for w, k, *_ in NUMBERS])
def test_number_fields(where, key, lo, hi, lo_open):
    field = prefix(where) + key
    expected = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    above = hi * 1.5 if hi > 0 else hi + 1
    bad_values = [(above, f"float {above!r}"), (math.nan, "float nan"), (math.inf, "float inf"),
                  (False, "bool False"), ("0.5", "str '0.5'"), (lo - 1, f"float {float(lo - 1)!r}")]
    if lo_open:
        bad_values.append((lo, f"float {lo!r}"))
    for bad, shown in bad_values:
        assert message(with_value(where, key, bad)) == f"{PATH}: {field} is {shown}, expected {expected}", bad
    just_above = hi + 0.5 if hi > 1 else hi + 1e-9
    assert message(with_value(where, key, just_above)) == \
        f"{PATH}: {field} is float {just_above!r}, expected {expected}"
    goods = [hi, int(hi) if float(hi).is_integer() else hi, None] + ([] if lo_open else [lo])
    for good in goods:
        assert message(with_value(where, key, good)) is None, good


@pytest.mark.parametrize("where, key", [("vision_config", "qkv_bias"), ("vision_config", "qk_normalization"),
                                        ("llm_config", "tie_word_embeddings"), ("llm_config", "bias"),
                                        ("llm_config", "use_sliding_window")])
def test_boolean_fields(where, key):
    for bad, shown in ((1, "int 1"), ("true", "str 'true'"), (0.0, "float 0.0")):
        assert message(with_value(where, key, bad)) == \
            f"{PATH}: {where}.{key} is {shown}, expected true or false"
    for good in (True, False, None):
        assert message(with_value(where, key, good)) is None


@pytest.mark.parametrize("where, key, nullable", [("", "ps_version", False), ("", "template", True),
                                                  ("", "system_message", True), ("vision_config", "hidden_act", False),
                                                  ("llm_config", "hidden_act", False)])
def test_string_fields(where, key, nullable):
    field = prefix(where) + key
    for bad, shown in ((3, "int 3"), (["v2"], "list ['v2']"), (True, "bool True")):
        assert message(with_value(where, key, bad)) == f"{PATH}: {field} is {shown}, expected a string"
    none = message(with_value(where, key, None))
    assert none is None if nullable else none == f"{PATH}: {field} is NoneType None, expected a string"


def test_the_top_level_shape():
    assert message([]) == f"{PATH}: holds a JSON list, expected an object (InternVLChatConfig format)"
    for key in ("vision_config", "llm_config"):
        cfg = base()
        cfg[key] = [1]
        assert message(cfg) == (f"{PATH}: needs '{key}' as an object (InternVLChatConfig format); got list [1]")
        del cfg[key]
        assert message(cfg) == f"{PATH}: needs '{key}' as an object (InternVLChatConfig format); got nothing"
    cfg = base()
    del cfg["ps_version"]
    assert message(cfg) == (f"{PATH}: no ps_version; the official default is 'v1' (another pixel shuffle, not "
                            "supported here): add \"ps_version\": \"v2\" only if the model was trained with v2")


def test_norm_type():
    cfg = base()
    del cfg["vision_config"]["norm_type"]              # absent: rms_norm, InternViT's default
    assert message(cfg) is None
    assert message(with_value("vision_config", "norm_type", "layer_norm")) is None
    assert message(with_value("vision_config", "norm_type", "rms_norm")) is None
    assert message(with_value("vision_config", "norm_type", "batch_norm")) == \
        f"{PATH}: vision_config.norm_type is str 'batch_norm', expected 'rms_norm' or 'layer_norm'"


def test_heads_divide_the_hidden_size():
    heads = TINY_VISION["num_attention_heads"]
    assert message(with_value("vision_config", "hidden_size", 66)) == \
        f"{PATH}: vision_config.hidden_size is int 66, expected a multiple of num_attention_heads ({heads})"
    heads = TINY_LLM["num_attention_heads"]
    assert message(with_value("llm_config", "hidden_size", 66)) == \
        f"{PATH}: llm_config.hidden_size is int 66, expected a multiple of num_attention_heads ({heads})"
    assert message(with_value("llm_config", "num_key_value_heads", 3)) == \
        f"{PATH}: llm_config.num_key_value_heads is int 3, expected a divisor of num_attention_heads ({heads})"
    assert message(with_value("llm_config", "num_key_value_heads", None)) is None     # then as many as the heads
    assert message(with_value("llm_config", "num_key_value_heads", heads)) is None


def test_the_image_size_is_a_multiple_of_the_patch_and_force_image_size_comes_first():
    cfg = with_value("vision_config", "image_size", 450)
    cfg["force_image_size"] = 448
    assert message(cfg) is None
    cfg["force_image_size"] = 450
    assert message(cfg) == (f"{PATH}: force_image_size / vision_config.image_size is int 450, expected a multiple of "
                            "the patch size")
    cfg["force_image_size"] = None
    assert message(cfg).endswith("is int 450, expected a multiple of the patch size")
    cfg = with_value("vision_config", "patch_size", 16)
    cfg["force_image_size"], cfg["vision_config"]["image_size"] = None, 464     # 29 patches of 16, not of 14
    assert message(cfg) is None
    del cfg["vision_config"]["image_size"]          # the default 448 with the default patch 14
    del cfg["vision_config"]["patch_size"]
    assert message(cfg) is None


@pytest.mark.parametrize("archs", [None, "InternLM2ForCausalLM", [], [3]])
def test_architectures(archs):
    shown = {None: "NoneType None", "InternLM2ForCausalLM": "str 'InternLM2ForCausalLM'", "[]": "list []",
             "[3]": "list [3]"}[str(archs) if isinstance(archs, list) else archs]
    assert message(with_value("llm_config", "architectures", archs)) == (
        f"{PATH}: llm_config.architectures is {shown}, expected a list naming the LLM class, e.g. "
        "['InternLM2ForCausalLM']")


def test_eos_token_id():
    for good in (2, [2, 92542], None, 0):
        assert message(with_value("llm_config", "eos_token_id", good)) is None, good
    for bad, shown in ((True, "bool True"), ("2", "str '2'"), ([], "list []"), ([2, True], "list [2, True]"),
                       ([2.0], "list [2.0]")):
        assert message(with_value("llm_config", "eos_token_id", bad)) == \
            f"{PATH}: llm_config.eos_token_id is {shown}, expected an integer or a list of integers", bad


def test_a_long_value_is_cut_at_40_characters():
    value = "x" * 50
    assert message(with_value("llm_config", "vocab_size", value)) == (
        f"{PATH}: llm_config.vocab_size is str {repr(value)[:40]}..., expected an integer 1..{MAX_VOCAB}")
    value = "z" * 39                                   # repr is 41 characters: cut
    assert message(with_value("llm_config", "vocab_size", value)) == (
        f"{PATH}: llm_config.vocab_size is str {repr(value)[:40]}..., expected an integer 1..{MAX_VOCAB}")
    value = "y" * 38                                   # repr is 40 characters: shown whole
    assert message(with_value("llm_config", "vocab_size", value)) == (
        f"{PATH}: llm_config.vocab_size is str {value!r}, expected an integer 1..{MAX_VOCAB}")


# ------------------------------------------------------------------------------------------------ rope_scaling
def rope(scaling, family: str = "2b", **llm) -> str | None:
    cfg = base(family)
    cfg["llm_config"]["rope_scaling"] = scaling
    cfg["llm_config"].update(llm)
    return message(cfg)


def test_plain_rope_scaling():
    assert rope(None) is None
    assert rope({"type": "dynamic", "factor": 2.0}) is None and rope({"rope_type": "linear", "factor": 1e6}) is None
    assert rope({"type": "linear"}) is None
    assert rope([1]) == (f"{PATH}: llm_config.rope_scaling is list [1], expected an object such as "
                         "{\"type\": \"dynamic\", \"factor\": 2.0} or null")
    assert rope({"factor": 2.0}) == f"{PATH}: llm_config.rope_scaling.type is NoneType None, expected a string"
    assert rope({"type": 2}) == f"{PATH}: llm_config.rope_scaling.type is int 2, expected a string"
    for bad, shown in ((0, "int 0"), (1e6 + 1, "float 1000001.0"), ("2", "str '2'")):
        assert rope({"type": "dynamic", "factor": bad}) == \
            f"{PATH}: llm_config.rope_scaling.factor is {shown}, expected a number in (0, 1e+06]"


def phi3_scaling(kind: str = "su", **change) -> dict:
    scaling = copy.deepcopy(base("4b")["llm_config"]["rope_scaling"])
    scaling["type"] = kind
    scaling.update(change)
    return scaling


@pytest.mark.parametrize("kind", ["su", "longrope", "yarn"])
def test_each_long_rope_kind_checks_its_factors(kind):
    cfg = base("4b")["llm_config"]
    half = cfg["hidden_size"] // cfg["num_attention_heads"] // 2
    assert rope(phi3_scaling(kind), "4b") is None
    factors = [1.0] * (half + 1)
    assert rope(phi3_scaling(kind, long_factor=factors), "4b") == (
        f"{PATH}: llm_config.rope_scaling.long_factor is list {repr(factors)[:40]}..., expected {half} numbers "
        f"(head_dim / 2), not {half + 1}")


def test_longrope_factors():
    cfg = base("4b")["llm_config"]
    half = cfg["hidden_size"] // cfg["num_attention_heads"] // 2
    assert rope(phi3_scaling(), "4b") is None and rope(phi3_scaling("longrope"), "4b") is None
    for key in ("short_factor", "long_factor"):
        for bad, shown in ((None, "NoneType None"), ([1.0] * (half - 1) + [0.0], None),
                           ([1.0] * (half - 1) + [math.inf], None), ([1.0] * (half - 1) + [True], None),
                           ("1.0", "str '1.0'")):
            got = rope(phi3_scaling(**{key: bad}), "4b")
            assert got.startswith(f"{PATH}: llm_config.rope_scaling.{key} is ") and \
                got.endswith("expected a list of positive numbers"), (bad, got)
            assert shown is None or f" is {shown}, " in got
        got = rope(phi3_scaling(**{key: [1.0] * (half + 1)}), "4b")
        assert got.endswith(f"expected {half} numbers (head_dim / 2), not {half + 1}"), got


def test_longrope_needs_the_original_length_and_yarn_does_not():
    needs = (f"{PATH}: llm_config.rope_scaling type 'su' needs llm_config.original_max_position_embeddings (the "
             "length where the long factors start; Phi-3-mini-128k: 4096)")
    assert rope(phi3_scaling(), "4b", original_max_position_embeddings=None) == needs
    assert rope(phi3_scaling(original_max_position_embeddings=4096), "4b", original_max_position_embeddings=None) \
        is None
    assert rope(phi3_scaling("yarn"), "4b", original_max_position_embeddings=None) is None
