"""Checking and loading a checkpoint (``models/checkpoint.py``): the summary ``check_checkpoint`` gives (counted here
from the safetensors headers), the refusals of ``plan_checkpoint`` before any weight is read, and what
``load_pretrained`` makes of a stored output layer and of NaN weights."""
from __future__ import annotations

import json
import logging
import math
import os
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from minimonkey_eval.errors import CheckpointError
from minimonkey_eval.models import checkpoint as ck
from minimonkey_eval.models.tiny_checkpoint import write_checkpoint


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("sharded") / "checkpoint", shards=2)


def stored_tensors(folder) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            shapes.update({k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()})
    return shapes


@pytest.mark.parametrize("which", ["single", "sharded"])
def test_check_checkpoint_summary(tiny_checkpoint, sharded, which):
    folder = tiny_checkpoint if which == "single" else sharded
    summary = ck.check_checkpoint(folder)
    shapes = stored_tensors(folder)
    cfg = json.loads((folder / "config.json").read_text())
    tokenizer = ck.plan_checkpoint(folder).tokenizer
    assert summary == {"arch": "InternLM2ForCausalLM", "template": "internlm2-chat", "tensors": len(shapes),
                       "shards": 1 if which == "single" else 2,
                       "parameters": sum(math.prod(s) for s in shapes.values()), "tokenizer": len(tokenizer),
                       "vocab": cfg["llm_config"]["vocab_size"]}


def copy_of(src, tmp_path):
    return shutil.copytree(src, tmp_path / "ck")


def test_check_checkpoint_refuses_a_tensor_of_another_shape(tiny_checkpoint, tmp_path):
    folder = copy_of(tiny_checkpoint, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    key = "mlp1.0.weight"
    state[key] = torch.ones(state[key].shape[0] + 1, dtype=state[key].dtype)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as exc:
        ck.check_checkpoint(folder)
    assert str(exc.value).startswith(f"{folder / 'model.safetensors'}: tensor {key} ")


def test_plan_refuses_a_tokenizer_larger_than_the_vocabulary(tiny_checkpoint, tmp_path):
    folder = copy_of(tiny_checkpoint, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    tokens = len(ck.plan_checkpoint(tiny_checkpoint).tokenizer)
    cfg["llm_config"]["vocab_size"] = tokens - 1
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as exc:
        ck.plan_checkpoint(folder)
    assert str(exc.value) == (f"{folder / 'tokenizer.model'}: tokenizer has {tokens} tokens but config.json "
                              f"llm_config.vocab_size is {tokens - 1}; tokenizer and weights do not belong together")


def test_plan_gives_the_native_config_the_image_token(tiny_checkpoint):
    plan = ck.plan_checkpoint(tiny_checkpoint, attn_implementation="eager")
    assert plan.config.image_token_id == plan.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert plan.config.text_config._attn_implementation == "eager"
    assert set(plan.located) == set(stored_tensors(tiny_checkpoint))
    assert plan.cfg.llm_arch == "InternLM2ForCausalLM"


def with_tie(tiny_checkpoint, tmp_path, lm_head: str):
    """The tiny checkpoint saying tie_word_embeddings=true, its output layer kept, dropped or made the embeddings."""
    folder = copy_of(tiny_checkpoint, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["llm_config"]["tie_word_embeddings"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    state = load_file(str(folder / "model.safetensors"))
    out, emb = "language_model.output.weight", "language_model.model.tok_embeddings.weight"
    if lm_head == "dropped":
        del state[out]
    elif lm_head == "the embeddings":
        state[out] = state[emb].clone()
    save_file(state, str(folder / "model.safetensors"))
    return folder, state


@pytest.mark.parametrize("lm_head", ["kept", "dropped", "the embeddings"])
def test_a_tied_flag_and_the_stored_output_layer(tiny_checkpoint, tmp_path, caplog, lm_head):
    folder, state = with_tie(tiny_checkpoint, tmp_path, lm_head)
    with caplog.at_level(logging.WARNING):
        model, _, _ = ck.load_pretrained(folder, dtype=torch.float32)
    head = model.lm_head.weight
    emb = model.model.language_model.embed_tokens.weight
    warned = [r.getMessage() for r in caplog.records if "tie_word_embeddings is true" in r.getMessage()]
    if lm_head == "kept":                    # a different stored output layer wins, with a warning naming it
        assert torch.equal(head, state["language_model.output.weight"].float()) and not torch.equal(head, emb)
        assert warned == [f"{folder / 'model.safetensors'}: llm_config.tie_word_embeddings is true but the file "
                          "stores a different language_model.output.weight; using the stored output layer (untied)"]
    else:
        assert torch.equal(head, emb) and warned == []


def test_nan_weights_are_refused_naming_the_tensor_and_the_count(tiny_checkpoint, tmp_path):
    folder = copy_of(tiny_checkpoint, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    key = "mlp1.1.weight"
    bad = state[key].clone()
    bad.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), float("-inf")], dtype=bad.dtype)
    state[key] = bad
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as exc:
        ck.load_pretrained(folder, dtype=torch.float32)
    assert str(exc.value) == (f"{folder / 'model.safetensors'}: tensor {key} holds 3 NaN/inf value(s); the "
                              "checkpoint is corrupt (re-download or re-convert it)")


def test_loaded_weights_take_the_dtype_asked_for(tiny_checkpoint):
    model, tokenizer, cfg = ck.load_pretrained(tiny_checkpoint, dtype=torch.float32)
    assert {p.dtype for p in model.parameters()} == {torch.float32} and not model.training
    assert cfg.llm_arch == "InternLM2ForCausalLM" and len(tokenizer) <= cfg.llm["vocab_size"]
    rotary = model.model.language_model.rotary_emb
    assert rotary.inv_freq.device.type == "cpu" and not rotary.inv_freq.is_meta


def shard_refused(folder) -> str:
    with pytest.raises(CheckpointError) as exc:
        ck.safetensors_files(folder)
    return str(exc.value)


def test_weight_files_that_are_not_regular_files(tmp_path):
    fifo = tmp_path / "fifo" / "model.safetensors"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    assert shard_refused(fifo.parent) == f"{fifo}: not a regular file (a FIFO, socket or device); restore the shard"
    loop = tmp_path / "loop" / "model.safetensors"
    loop.parent.mkdir()
    loop.symlink_to(loop)
    assert shard_refused(loop.parent) == f"{loop}: cannot open this weight file (a symlink loop); restore the shard"
    dangling = tmp_path / "dangling" / "model.safetensors"
    dangling.parent.mkdir()
    dangling.symlink_to(tmp_path / "nowhere")
    assert shard_refused(dangling.parent) == (f"{dangling}: cannot open this weight file (No such file or directory); "
                                              "restore the shard")
    garbage = tmp_path / "garbage" / "model.safetensors"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    assert shard_refused(garbage.parent).startswith(f"{garbage}: unreadable safetensors file (")
    pickle = tmp_path / "pickle"
    pickle.mkdir()
    (pickle / "model.pth").write_bytes(b"x")
    assert shard_refused(pickle) == (f"{pickle}: no *.safetensors weights (found model.pth: pickle checkpoints are "
                                     "not loaded; convert them to safetensors)")
