"""Checkpoint checks that must refuse, each with its one line: a v1 (or unset) ``ps_version``, InternViT-6B's
``qk_normalization``, the ``force_image_size`` priority, and the shard index's consistency."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from minimonkey_eval.models.checkpoint import CheckpointError, read_config, safetensors_files
from minimonkey_eval.models.tiny_checkpoint import write_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ck") / "checkpoint")


def edited(checkpoint, tmp_path, edit, name: str = "edited"):
    """A copy of the checkpoint's config.json only (read_config needs no weights), edited in place."""
    folder = tmp_path / name
    folder.mkdir()
    cfg = json.loads((checkpoint / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def refused(folder, *needles):
    with pytest.raises(CheckpointError) as exc:
        read_config(folder)
    message = str(exc.value)
    assert "\n" not in message and str(folder / "config.json") in message
    assert all(n in message for n in needles), message


def test_the_tiny_checkpoint_reads(checkpoint):
    cfg = read_config(checkpoint)
    assert cfg.ps_version == "v2" and cfg.image_size == 448 and cfg.num_image_token == 256


def test_a_v1_checkpoint_is_refused(checkpoint, tmp_path):
    """v1's pixel shuffle transposes differently: it would load and answer wrongly."""
    refused(edited(checkpoint, tmp_path, lambda c: c.update(ps_version="v1")), "ps_version 'v1' is not supported",
            "only 'v2'")


def test_a_checkpoint_without_ps_version_is_refused(checkpoint, tmp_path):
    refused(edited(checkpoint, tmp_path, lambda c: c.pop("ps_version")), "no ps_version", "official default is 'v1'")


def test_qk_normalization_is_refused(checkpoint, tmp_path):
    refused(edited(checkpoint, tmp_path, lambda c: c["vision_config"].update(qk_normalization=True)),
            "qk_normalization=true (InternViT-6B) is not supported")
    cfg = read_config(edited(checkpoint, tmp_path, lambda c: c["vision_config"].update(qk_normalization=False),
                             name="off"))
    assert cfg.ps_version == "v2"


@pytest.mark.parametrize("force, vision, expected", [(224, 448, 224), (None, 336, 336), (None, None, 448),
                                                     (0, 224, 224), (896, 448, 896)])
def test_force_image_size_comes_first(checkpoint, tmp_path, force, vision, expected):
    def edit(c):
        c["force_image_size"] = force
        if vision is None:
            c["vision_config"].pop("image_size", None)
        else:
            c["vision_config"]["image_size"] = vision

    if force == 0:
        with pytest.raises(CheckpointError, match="force_image_size"):
            read_config(edited(checkpoint, tmp_path, edit))
        return
    cfg = read_config(edited(checkpoint, tmp_path, edit))
    assert cfg.image_size == expected
    assert cfg.num_image_token == int((expected // 14) ** 2 * 0.25)


# ------------------------------------------------------------------------------------------------ shards
@pytest.fixture
def sharded(tmp_path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    save_file({"a": torch.zeros(2), "b": torch.ones(2)}, str(folder / "one.safetensors"))
    save_file({"c": torch.zeros(3)}, str(folder / "two.safetensors"))
    return folder


def write_index(folder, weight_map):
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_a_consistent_index_maps_every_tensor(sharded):
    write_index(sharded, {"a": "one.safetensors", "b": "one.safetensors", "c": "two.safetensors"})
    assert safetensors_files(sharded) == {"a": sharded / "one.safetensors", "b": sharded / "one.safetensors",
                                          "c": sharded / "two.safetensors"}


def test_a_tensor_listed_in_the_wrong_shard_is_refused(sharded):
    write_index(sharded, {"a": "one.safetensors", "b": "one.safetensors", "c": "one.safetensors"})
    with pytest.raises(CheckpointError, match=r"one.safetensors: tensor c listed in model.safetensors.index.json "
                                              r"is not in this shard"):
        safetensors_files(sharded)


@pytest.mark.parametrize("name, needle", [("../one.safetensors", "is not a file name inside the checkpoint folder"),
                                          ("/abs/one.safetensors", "is not a file name inside the checkpoint folder"),
                                          ("", "is not a file name inside the checkpoint folder"),
                                          ("three.safetensors", "shard listed in model.safetensors.index.json is "
                                                                "missing"),
                                          ("sub", "is a folder, not a safetensors file")])
def test_bad_shard_names_are_refused(sharded, name, needle):
    (sharded / "sub").mkdir()
    write_index(sharded, {"a": "one.safetensors", "c": name})
    with pytest.raises(CheckpointError, match=needle):
        safetensors_files(sharded)


def test_without_an_index_every_file_is_read_and_pickles_are_named(sharded, tmp_path):
    assert set(safetensors_files(sharded)) == {"a", "b", "c"}
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="found pytorch_model.bin: pickle checkpoints are not loaded"):
        safetensors_files(empty)
    shutil.rmtree(empty)
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"no \*.safetensors weights$"):
        safetensors_files(empty)
