"""From the original ``config.json`` to transformers' native config (``models/checkpoint.py``): every field of the
native vision / text config for each LLM family with the values its published checkpoint carries and with the
defaults the official config classes use when a field is absent; Phi-3's RoPE constants by hand; each config the
native model cannot reproduce refused with its one line."""
from __future__ import annotations

import json
import math

import pytest

from minimonkey_eval.errors import CheckpointError
from minimonkey_eval.models import checkpoint as ck
from minimonkey_eval.models.tiny_checkpoint import TINY_LLM, TINY_VISION, original_config

IMAGE_TOKEN = 7


def original(family: str = "2b", **top) -> ck.OriginalConfig:
    raw = original_config(dict(TINY_VISION), dict(TINY_LLM), 1000, family=family)
    raw.update(top)
    return ck.OriginalConfig(raw=raw, vision=raw["vision_config"], llm=raw["llm_config"],
                             llm_arch=raw["llm_config"]["architectures"][0], template=raw["template"],
                             downsample_ratio=raw["downsample_ratio"], select_layer=raw["select_layer"],
                             image_size=raw["force_image_size"], ps_version="v2")


def read(tmp_path, raw: dict) -> ck.OriginalConfig:
    (tmp_path / "config.json").write_text(json.dumps(raw))
    return ck.read_config(tmp_path)


def refused(tmp_path, raw=None) -> str:
    """The one line read_config gives for ``raw`` written as config.json (None: the folder as it is)."""
    if raw is not None:
        (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError) as exc:
        ck.read_config(tmp_path)
    return str(exc.value)


def native_refused(cfg: ck.OriginalConfig) -> str:
    with pytest.raises(CheckpointError) as exc:
        ck.native_config(cfg, IMAGE_TOKEN)
    return str(exc.value)


def raw_config(family: str = "2b") -> dict:
    return original_config(dict(TINY_VISION), dict(TINY_LLM), 1000, family=family)


# ------------------------------------------------------------------------------------------------ Phi-3 RoPE
def test_phi3_rope_without_scaling_is_default():
    assert ck.phi3_rope_parameters({}) == {"rope_type": "default", "rope_theta": 10000.0}
    assert ck.phi3_rope_parameters({"rope_theta": 5e5, "rope_scaling": None}) == \
        {"rope_type": "default", "rope_theta": 500000.0}


@pytest.mark.parametrize("kind, attention_factor", [
    ("su", math.sqrt(1 + math.log(32) / math.log(4096))),        # sqrt(17 / 12)
    ("longrope", math.sqrt(17 / 12)),
    ("yarn", 0.1 * math.log(32) + 1.0),
])
def test_phi3_128k_rope(kind, attention_factor):
    t = {"max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "rope_theta": 10000.0,
         "rope_scaling": {"type": kind, "short_factor": (1.0, 2.0), "long_factor": [3.0, 4.0]}}
    assert ck.phi3_rope_parameters(t) == {
        "rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0, 2.0], "long_factor": [3.0, 4.0],
        "original_max_position_embeddings": 4096, "factor": 32.0, "attention_factor": pytest.approx(attention_factor),
        "partial_rotary_factor": 1.0}


def test_phi3_rope_reads_the_original_length_where_it_is():
    scaling = {"rope_type": "su", "short_factor": [1.0], "long_factor": [2.0]}
    in_scaling = ck.phi3_rope_parameters({"max_position_embeddings": 8192, "partial_rotary_factor": 0.5,
                                          "rope_scaling": dict(scaling, original_max_position_embeddings=2048)})
    assert (in_scaling["original_max_position_embeddings"], in_scaling["factor"]) == (2048, 4.0)
    assert in_scaling["attention_factor"] == pytest.approx(math.sqrt(1 + math.log(4) / math.log(2048)))
    assert in_scaling["partial_rotary_factor"] == 0.5
    first = ck.phi3_rope_parameters({"max_position_embeddings": 8192, "original_max_position_embeddings": 4096,
                                     "rope_scaling": dict(scaling, original_max_position_embeddings=2048)})
    assert first["original_max_position_embeddings"] == 4096 and first["factor"] == 2.0
    short = ck.phi3_rope_parameters({"max_position_embeddings": 4096, "rope_scaling": dict(scaling)})
    assert (short["original_max_position_embeddings"], short["factor"], short["attention_factor"]) == (4096, 1.0, 1.0)
    none = ck.phi3_rope_parameters({"rope_scaling": dict(scaling)})             # 4096 / 4096
    assert (none["original_max_position_embeddings"], none["factor"], none["attention_factor"]) == (4096, 1.0, 1.0)
    below = ck.phi3_rope_parameters({"max_position_embeddings": 2048, "original_max_position_embeddings": 4096,
                                     "rope_scaling": dict(scaling, type="yarn")})
    assert (below["factor"], below["attention_factor"]) == (1.0, 1.0)


@pytest.mark.parametrize("family, kind, line", [
    ("4b", "dynamic", "type 'dynamic' is not supported for Phi-3 (supported: su, longrope, yarn)"),
    ("2b", "yarn", "type 'yarn' is not supported here (supported: linear, dynamic)"),
])
def test_rope_of_another_kind_is_refused(family, kind, line):
    cfg = original(family)
    cfg.llm["rope_scaling"] = {"type": kind, "factor": 2.0}
    assert native_refused(cfg) == f"config.json: llm_config.rope_scaling {line}"


# ------------------------------------------------------------------------------------------------ native configs
def test_native_vision_config_and_composite_fields():
    cfg = original("2b", downsample_ratio=0.25, select_layer=-2)
    native = ck.native_config(cfg, IMAGE_TOKEN, attn_implementation="eager")
    v = native.vision_config
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.intermediate_size) == \
        tuple(TINY_VISION[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"))
    assert (v.hidden_act, tuple(v.image_size), tuple(v.patch_size), v.num_channels, v.attention_bias, v.use_qk_norm,
            v.norm_type, v.layer_norm_eps, v.use_mean_pooling, v.use_absolute_position_embeddings,
            v.layer_scale_init_value) == ("gelu", (448, 448), (14, 14), 3, True, False, "layer_norm", 1e-6, True,
                                          True, 1.0)
    assert (native.downsample_ratio, native.vision_feature_layer, native.vision_feature_select_strategy,
            native.projector_hidden_act, native.image_token_id, native.image_seq_length) == \
        (0.25, -2, "default", "gelu", IMAGE_TOKEN, cfg.num_image_token)
    assert native._attn_implementation == "eager" and native.text_config._attn_implementation == "eager"


def test_native_vision_defaults_when_fields_are_absent():
    cfg = original("2b")
    for key in ("hidden_act", "patch_size", "num_channels", "qkv_bias", "norm_type", "layer_norm_eps",
                "initializer_factor"):
        cfg.vision.pop(key)
    cfg.image_size = 224
    v = ck.native_config(cfg, IMAGE_TOKEN).vision_config
    assert (v.hidden_act, tuple(v.image_size), tuple(v.patch_size), v.num_channels, v.attention_bias, v.norm_type,
            v.layer_norm_eps, v.layer_scale_init_value) == ("gelu", (224, 224), (14, 14), 3, True, "rms_norm", 1e-6,
                                                             1.0)
    cfg.vision.update(qkv_bias=False, initializer_factor=0.1, layer_norm_eps=1e-5, patch_size=16,
                      hidden_act="gelu_new")
    v = ck.native_config(cfg, IMAGE_TOKEN).vision_config
    assert (v.attention_bias, v.layer_scale_init_value, v.layer_norm_eps, tuple(v.patch_size), v.hidden_act) == \
        (False, 0.1, 1e-5, (16, 16), "gelu_new")


def common(text) -> tuple:
    return (text.vocab_size, text.hidden_size, text.intermediate_size, text.num_hidden_layers,
            text.num_attention_heads, text.num_key_value_heads, text.hidden_act)


def test_internlm2_becomes_llama_with_its_fields_and_defaults():
    cfg = original("2b")
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    assert type(text).__name__ == "LlamaConfig"
    assert common(text) == (1000, TINY_LLM["hidden_size"], TINY_LLM["intermediate_size"],
                            TINY_LLM["num_hidden_layers"], TINY_LLM["num_attention_heads"],
                            TINY_LLM["num_key_value_heads"], "silu")
    assert (text.max_position_embeddings, text.rms_norm_eps, text.attention_bias, text.mlp_bias, text.bos_token_id,
            text.eos_token_id, text.pad_token_id, text.tie_word_embeddings) == (32768, 1e-5, False, False, 1, 2, 2,
                                                                                False)
    assert text.rope_parameters == {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000000.0}
    for key in ("max_position_embeddings", "rms_norm_eps", "bias", "bos_token_id", "eos_token_id", "pad_token_id",
                "rope_scaling", "rope_theta", "num_key_value_heads", "hidden_act"):
        cfg.llm.pop(key)
    cfg.llm["max_position_embeddings"] = 4096
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    assert (text.max_position_embeddings, text.rms_norm_eps, text.attention_bias, text.bos_token_id,
            text.eos_token_id, text.pad_token_id, text.num_key_value_heads, text.hidden_act) == \
        (4096, 1e-6, False, 1, 2, 2, TINY_LLM["num_attention_heads"], "silu")
    assert text.rope_parameters == {"rope_type": "default", "rope_theta": 10000.0}
    cfg.llm.update(bias=True, rope_scaling={"rope_type": "linear", "factor": 4})
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    assert text.attention_bias is True and text.rope_parameters == {"rope_type": "linear", "factor": 4.0,
                                                                     "rope_theta": 10000.0}


def test_qwen2_fields_and_defaults():
    cfg = original("1b")
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    assert type(text).__name__ == "Qwen2Config"
    llm = cfg.llm
    assert (text.max_position_embeddings, text.rms_norm_eps, text.use_sliding_window, text.max_window_layers,
            text.attention_dropout, text.bos_token_id, text.eos_token_id) == \
        (32768, 1e-6, False, llm["num_hidden_layers"], 0.0, llm["bos_token_id"], llm["eos_token_id"])
    assert text.rope_parameters["rope_theta"] == 1000000.0 and text.rope_parameters["rope_type"] == "default"
    for key in ("max_position_embeddings", "rms_norm_eps", "use_sliding_window", "sliding_window", "max_window_layers",
                "bos_token_id", "eos_token_id", "rope_theta"):
        llm.pop(key)
    llm.update(max_position_embeddings=2048, rms_norm_eps=1e-5, max_window_layers=1)
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    assert (text.max_position_embeddings, text.rms_norm_eps, text.max_window_layers, text.bos_token_id,
            text.eos_token_id, text.pad_token_id) == (2048, 1e-5, 1, None, None, None)
    llm.pop("max_window_layers")
    assert ck.native_config(cfg, IMAGE_TOKEN).text_config.max_window_layers == llm["num_hidden_layers"]
    assert ck.native_config(cfg, IMAGE_TOKEN).text_config.rope_parameters["rope_theta"] == 10000.0


def test_phi3_fields_and_defaults():
    cfg = original("4b")
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    assert type(text).__name__ == "Phi3Config"
    assert (text.max_position_embeddings, text.original_max_position_embeddings, text.rms_norm_eps,
            text.resid_pdrop, text.embd_pdrop, text.attention_dropout, text.bos_token_id, text.eos_token_id,
            text.pad_token_id) == (131072, 4096, 1e-5, 0.0, 0.0, 0.0, 1, cfg.llm["eos_token_id"],
                                   cfg.llm["pad_token_id"])
    assert text.rope_parameters["rope_type"] == "longrope" and text.rope_parameters["factor"] == 32.0
    for key in ("max_position_embeddings", "original_max_position_embeddings", "rms_norm_eps", "sliding_window",
                "bos_token_id", "eos_token_id", "pad_token_id", "rope_scaling"):
        cfg.llm.pop(key)
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    assert (text.max_position_embeddings, text.original_max_position_embeddings, text.rms_norm_eps,
            text.sliding_window, text.bos_token_id, text.eos_token_id, text.pad_token_id) == \
        (4096, 4096, 1e-5, None, 1, 32000, 32000)
    cfg.llm.update(original_max_position_embeddings=2048, max_position_embeddings=2048, sliding_window=1024)
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    assert (text.original_max_position_embeddings, text.sliding_window) == (2048, 1024)


def test_tied_output_layer_needs_the_flag_and_no_stored_output_layer():
    adapter = ck.ADAPTERS["InternLM2ForCausalLM"]
    assert adapter.tied({}) is False and adapter.tied({"tie_word_embeddings": False}) is False
    assert adapter.tied({"tie_word_embeddings": True}) is True
    assert adapter.tied({"tie_word_embeddings": True}, ["language_model.model.tok_embeddings.weight"]) is True
    assert adapter.tied({"tie_word_embeddings": True}, ["language_model.output.weight"]) is False
    assert ck.ADAPTERS["Qwen2ForCausalLM"].tied({"tie_word_embeddings": True}, [ck.LM_HEAD]) is False
    cfg = original("2b")
    cfg.llm["tie_word_embeddings"] = True
    assert ck.native_config(cfg, IMAGE_TOKEN).text_config.tie_word_embeddings is True
    native = ck.native_config(cfg, IMAGE_TOKEN, stored_keys=["language_model.output.weight"])
    assert native.text_config.tie_word_embeddings is False and native.tie_word_embeddings is False


def test_an_llm_config_without_a_needed_field_is_one_line():
    for family, arch in (("2b", "InternLM2ForCausalLM"), ("1b", "Qwen2ForCausalLM"), ("4b", "Phi3ForCausalLM")):
        cfg = original(family)
        cfg.llm.pop("vocab_size")
        assert native_refused(cfg) == f"config.json: llm_config lacks 'vocab_size' ({arch})"


def test_a_config_transformers_rejects_is_one_line():
    cfg = original("2b")
    cfg.llm["rope_scaling"] = {"type": "dynamic", "factor": "two"}
    assert native_refused(cfg).startswith("config.json: transformers rejects the InternLM2ForCausalLM config: ")


# ------------------------------------------------------------------------------------------------ read_config
def test_read_config_fields_and_defaults(tmp_path):
    raw = raw_config("2b")
    raw.update(downsample_ratio=0.25, select_layer=-3, system_message="be brief")
    cfg = read(tmp_path, raw)
    assert (cfg.llm_arch, cfg.template, cfg.downsample_ratio, cfg.select_layer, cfg.image_size, cfg.ps_version,
            cfg.system_message) == ("InternLM2ForCausalLM", "internlm2-chat", 0.25, -3, 448, "v2", "be brief")
    assert cfg.num_image_token == int((448 // 14) ** 2 * 0.25 ** 2)
    for key in ("downsample_ratio", "select_layer", "template", "system_message", "force_image_size"):
        raw.pop(key)
    raw["vision_config"]["image_size"] = 224
    cfg = read(tmp_path, raw)
    assert (cfg.template, cfg.downsample_ratio, cfg.select_layer, cfg.image_size, cfg.system_message) == \
        ("internlm2-chat", 0.5, -1, 224, None)
    assert cfg.num_image_token == 64
    raw["vision_config"].pop("image_size")
    assert read(tmp_path, raw).image_size == 448


def test_read_config_refusals(tmp_path):
    missing = tmp_path / "config.json"
    assert refused(tmp_path) == f"{missing}: missing; not an InternVL-format checkpoint directory"
    missing.write_text("{")
    assert refused(tmp_path).startswith(f"{missing}: invalid JSON (Expecting property name")
    raw = raw_config("2b")
    raw["llm_config"]["architectures"] = ["MistralForCausalLM"]
    assert refused(tmp_path, raw) == (f"{missing}: llm_config.architectures 'MistralForCausalLM' is not supported; "
                                      "supported: InternLM2ForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM")
    raw = raw_config("2b")
    raw["template"] = "vicuna_v1.1"
    assert refused(tmp_path, raw).startswith(f"{missing}: chat template 'vicuna_v1.1' is not supported (supported: ")
    raw["template"] = "phi3-chat"
    assert refused(tmp_path, raw) == (f"{missing}: chat template 'phi3-chat' does not belong to InternLM2ForCausalLM "
                                      "(its tokenizer's turns: internlm2-chat, Hermes-2); fix 'template'")
    raw = raw_config("2b")
    raw["vision_config"]["hidden_act"] = "swish2"
    assert refused(tmp_path, raw) == (f"{missing}: vision_config.hidden_act 'swish2' is not an activation "
                                      "transformers knows (e.g. 'silu', 'gelu')")
    raw = raw_config("2b")
    raw["llm_config"]["hidden_act"] = "swish2"
    assert refused(tmp_path, raw) == (f"{missing}: llm_config.hidden_act 'swish2' is not an activation "
                                      "transformers knows (e.g. 'silu', 'gelu')")
    raw = raw_config("2b")
    raw["vision_config"]["hidden_size"] = "64"
    assert refused(tmp_path, raw).startswith(f"{missing}: vision_config.hidden_size is str '64'")



# ------------------------------------------------------------------------------------------------ every field carried
# family -> {llm_config key: (value written, native attribute, value expected)}: values no default has
CUSTOM = {
    "2b": {"max_position_embeddings": (1234, "max_position_embeddings", 1234), "rms_norm_eps": (1e-4, "rms_norm_eps",
           1e-4), "bias": (True, "attention_bias", True), "bos_token_id": (5, "bos_token_id", 5),
           "eos_token_id": (6, "eos_token_id", 6), "pad_token_id": (7, "pad_token_id", 7),
           "hidden_act": ("gelu", "hidden_act", "gelu")},
    "1b": {"max_position_embeddings": (1234, "max_position_embeddings", 1234), "rms_norm_eps": (1e-4, "rms_norm_eps",
           1e-4), "use_sliding_window": (True, "use_sliding_window", True), "sliding_window": (1024, "sliding_window",
           1024), "max_window_layers": (1, "max_window_layers", 1), "bos_token_id": (5, "bos_token_id", 5),
           "eos_token_id": (6, "eos_token_id", 6), "pad_token_id": (7, "pad_token_id", 7)},
    "4b": {"max_position_embeddings": (8192, "max_position_embeddings", 8192), "rms_norm_eps": (1e-4, "rms_norm_eps",
           1e-4), "sliding_window": (1024, "sliding_window", 1024), "bos_token_id": (5, "bos_token_id", 5),
           "eos_token_id": (6, "eos_token_id", 6), "pad_token_id": (7, "pad_token_id", 7)},
}
# family -> {llm_config key removed: (native attribute, the official config class's default)}
DEFAULTS = {
    "2b": {"max_position_embeddings": ("max_position_embeddings", 32768), "rms_norm_eps": ("rms_norm_eps", 1e-6),
           "bias": ("attention_bias", False), "bos_token_id": ("bos_token_id", 1), "eos_token_id": ("eos_token_id", 2),
           "pad_token_id": ("pad_token_id", 2), "hidden_act": ("hidden_act", "silu")},
    "1b": {"max_position_embeddings": ("max_position_embeddings", 32768), "rms_norm_eps": ("rms_norm_eps", 1e-6),
           "use_sliding_window": ("use_sliding_window", False), "bos_token_id": ("bos_token_id", None),
           "eos_token_id": ("eos_token_id", None), "pad_token_id": ("pad_token_id", None)},
    "4b": {"max_position_embeddings": ("max_position_embeddings", 4096), "rms_norm_eps": ("rms_norm_eps", 1e-5),
           "bos_token_id": ("bos_token_id", 1), "eos_token_id": ("eos_token_id", 32000),
           "pad_token_id": ("pad_token_id", 32000), "sliding_window": ("sliding_window", None)},
}


@pytest.mark.parametrize("family", ["2b", "1b", "4b"])
def test_every_llm_field_is_carried(family):
    cfg = original(family)
    for key, (value, _, _) in CUSTOM[family].items():
        cfg.llm[key] = value
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    got = {key: getattr(text, attr) for key, (_, attr, _) in CUSTOM[family].items()}
    assert got == {key: expected for key, (_, _, expected) in CUSTOM[family].items()}


@pytest.mark.parametrize("family", ["2b", "1b", "4b"])
def test_every_absent_llm_field_takes_the_official_default(family):
    cfg = original(family)
    for key in DEFAULTS[family]:
        cfg.llm.pop(key, None)
    if family == "4b":
        cfg.llm.pop("original_max_position_embeddings")
        cfg.llm["rope_scaling"]["original_max_position_embeddings"] = 4096
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    got = {key: getattr(text, attr) for key, (attr, _) in DEFAULTS[family].items()}
    assert got == {key: default for key, (_, default) in DEFAULTS[family].items()}


def test_phi3_reads_the_original_length_from_rope_scaling():
    cfg = original("4b")
    cfg.llm.pop("original_max_position_embeddings")
    cfg.llm["rope_scaling"]["original_max_position_embeddings"] = 2048
    text = ck.native_config(cfg, IMAGE_TOKEN).text_config
    assert text.original_max_position_embeddings == 2048 and text.rope_parameters["factor"] == 131072 / 2048


def test_phi3_rope_of_twice_the_original_length():
    r = ck.phi3_rope_parameters({"max_position_embeddings": 8192, "original_max_position_embeddings": 4096,
                                 "rope_scaling": {"type": "su", "short_factor": [1.0], "long_factor": [2.0]}})
    assert r["factor"] == 2.0 and r["attention_factor"] == pytest.approx(math.sqrt(1 + math.log(2) / math.log(4096)))
    only_max = ck.phi3_rope_parameters({"max_position_embeddings": 8192,
                                        "rope_scaling": {"type": "su", "short_factor": [1.0], "long_factor": [2.0]}})
    assert (only_max["original_max_position_embeddings"], only_max["factor"]) == (8192, 1.0)


def test_vision_channels_are_carried():
    cfg = original("2b")
    cfg.vision["num_channels"] = 1
    assert ck.native_config(cfg, IMAGE_TOKEN).vision_config.num_channels == 1


def test_read_config_keeps_the_raw_dict_and_default_activations(tmp_path):
    raw = raw_config("2b")
    raw["vision_config"].pop("hidden_act")
    raw["llm_config"].pop("hidden_act")
    cfg = read(tmp_path, raw)
    assert cfg.raw == raw and cfg.vision == raw["vision_config"] and cfg.llm == raw["llm_config"]
    assert ck.native_config(cfg, IMAGE_TOKEN).vision_config.hidden_act == "gelu"
