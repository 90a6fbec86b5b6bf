"""Checkpoint identity: any changed weight byte changes it, the content hash is cached, and a run refuses to resume
on a same-shape weight swap."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from helpers.runner_utils import FAST_TILES
from safetensors import safe_open
from safetensors.torch import save_file

from minimonkey_eval.datasets.fixtures import write_sample_tsvs
from minimonkey_eval.errors import CheckpointError
from minimonkey_eval.eval.launch import run
from minimonkey_eval.eval.run.options import RunError, RunOptions
from minimonkey_eval.models import identity
from minimonkey_eval.models.identity import checkpoint_fingerprint, checkpoint_identity, file_sha256

DATASET = "POPE"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(identity.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def ckpt(tmp_path, tiny_checkpoint):
    return shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")


def _shards(path):
    return sorted(path.glob("*.safetensors"))


def _swap_weights(shard) -> None:
    """Rewrite a shard with the same keys, shapes, dtypes and file size but different values, keeping its mtime."""
    st = os.stat(shard)
    with safe_open(str(shard), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        meta = handle.metadata()
    key = next(k for k, t in tensors.items() if t.is_floating_point() and t.numel() > 1)
    tensors[key] = tensors[key] + 1
    save_file(tensors, str(shard), metadata=meta)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))   # as `cp -p` or `rsync -t` would leave it
    assert os.stat(shard).st_size == st.st_size


def test_one_changed_tensor_byte_changes_the_identity(ckpt, cache):
    before = checkpoint_identity(ckpt)
    assert set(before) >= {"config.json", "tokenizer.model"} and any(n.endswith(".safetensors") for n in before)
    shard = _shards(ckpt)[0]
    _swap_weights(shard)
    after = checkpoint_identity(ckpt)
    assert after[shard.name] != before[shard.name]
    assert {k for k in before if before[k] != after[k]} == {shard.name}
    assert checkpoint_fingerprint(ckpt, after) != checkpoint_fingerprint(ckpt, before)


def test_content_hash_is_cached_against_the_files_metadata(ckpt, cache, monkeypatch):
    shard = _shards(ckpt)[0]
    reads: list = []
    real = identity._hash_file
    monkeypatch.setattr(identity, "_hash_file", lambda f: reads.append(f) or real(f))
    first = file_sha256(shard)
    assert reads == [shard] and any(cache.rglob("*.json"))
    assert file_sha256(shard) == first and reads == [shard]          # second call: from the cache
    shard.write_bytes(shard.read_bytes())                            # same bytes, new mtime/ctime: rehashed, same sha
    assert file_sha256(shard) == first and len(reads) == 2


def test_a_bad_or_unwritable_cache_only_costs_a_rehash(ckpt, cache):
    shard = _shards(ckpt)[0]
    truth = file_sha256(shard)
    for entry in cache.rglob("*.json"):
        entry.write_text(json.dumps({"key": "other", "sha256": "0" * 64}))
    assert file_sha256(shard) == truth
    for entry in cache.rglob("*.json"):
        entry.write_text("[1, 2")
    assert file_sha256(shard) == truth
    shutil.rmtree(cache)
    cache.write_text("a file where the cache folder should be")
    assert file_sha256(shard) == truth


def test_unreadable_shard_is_one_line_naming_it(ckpt, cache):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    shard = _shards(ckpt)[0]
    shard.chmod(0)
    with pytest.raises(CheckpointError, match=shard.name):
        checkpoint_fingerprint(ckpt)


def test_a_same_shape_weight_swap_is_not_resumed(tmp_path, ckpt, cache, engine):
    lmudata = tmp_path / "LMUData"
    write_sample_tsvs(lmudata, datasets=[DATASET])
    opts = dict(model="MiniMonkey", datasets=[DATASET], model_path=str(ckpt), data_root=str(lmudata),
                work_dir=str(tmp_path / "results"), run_name="r", tiles=FAST_TILES, max_new_tokens=2, limit=2)
    run(RunOptions(**opts), engine=engine)
    meta = json.loads((tmp_path / "results" / "r" / "run.json").read_text())
    assert meta["checkpoint_files"] == checkpoint_identity(ckpt)
    assert meta["checkpoint_sha256"] == checkpoint_fingerprint(ckpt)
    _swap_weights(_shards(ckpt)[0])
    with pytest.raises(RunError, match="checkpoint_sha256"):
        run(RunOptions(**{**opts, "limit": 4}), engine=engine)
