"""Offline dataset loading: one-line errors, md5 mismatch only warns, and nothing touches the network."""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest

from minimonkey_eval.datasets.fixtures import ALL_DATASETS, write_sample_tsvs
from minimonkey_eval.datasets.local import FIXTURE_MANIFEST, DataError, dataset_class, file_md5, load_dataset


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("LMUData")
    write_sample_tsvs(root)
    return root


class NetworkTouched(RuntimeError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Any connect / DNS lookup raises."""
    def refuse(*args, **kwargs):
        raise NetworkTouched(f"network access attempted: {args[1:] or kwargs}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


def test_missing_tsv_is_one_line_with_path_url_and_fix(tmp_path, no_network):
    with pytest.raises(DataError) as err:
        load_dataset("OCRBench", tmp_path)
    msg = _one_line(err)
    assert str(tmp_path / "OCRBench.tsv") in msg
    assert "https://opencompass.openxlab.space/utils/VLMEval/OCRBench.tsv" in msg
    assert "--allow-download" in msg and "copy" in msg


def test_missing_tsv_url_for_benchmarks_subfolder(tmp_path, no_network):
    with pytest.raises(DataError) as err:
        load_dataset("MMBench_DEV_EN", tmp_path)
    assert "utils/benchmarks/MMBench/MMBench_DEV_EN.tsv" in _one_line(err)


def test_allow_download_is_the_only_way_to_the_network(tmp_path, no_network):
    with pytest.raises(DataError) as err:  # vlmeval's download fails on the blocked socket
        load_dataset("POPE", tmp_path, allow_download=True)
    assert "download" in _one_line(err)


def test_md5_mismatch_warns_and_uses_local_file(tmp_path, lmudata, caplog, no_network):
    shutil.copy(lmudata / "POPE.tsv", tmp_path / "POPE.tsv")   # no fixture manifest beside it: a user's file
    with caplog.at_level(logging.WARNING, logger="minimonkey_eval.datasets.local"):
        ds = load_dataset("POPE", tmp_path)
    assert len(ds) == len(pd.read_csv(tmp_path / "POPE.tsv", sep="\t"))
    warned = [r.getMessage() for r in caplog.records if "md5" in r.getMessage()]
    assert len(warned) == 1 and str(tmp_path / "POPE.tsv") in warned[0]


def test_synthetic_fixture_is_exempt_only_byte_for_byte(tmp_path, caplog, no_network):
    write_sample_tsvs(tmp_path, datasets=["POPE"])
    write_sample_tsvs(tmp_path, datasets=["MME"])            # the manifest accumulates
    assert {"POPE.tsv", "MME.tsv"} <= set(json.loads((tmp_path / FIXTURE_MANIFEST).read_text()))
    with caplog.at_level(logging.WARNING, logger="minimonkey_eval.datasets.local"):
        load_dataset("POPE", tmp_path)
    assert not [r for r in caplog.records if "md5" in r.getMessage()]
    df = pd.read_csv(tmp_path / "POPE.tsv", sep="\t")
    df.iloc[:-1].to_csv(tmp_path / "POPE.tsv", sep="\t", index=False)   # replaced by other bytes: warns again
    with caplog.at_level(logging.WARNING, logger="minimonkey_eval.datasets.local"):
        load_dataset("POPE", tmp_path)
    assert len([r for r in caplog.records if "md5" in r.getMessage()]) == 1


def test_md5_match_is_silent(lmudata, caplog, monkeypatch):
    cls = dataset_class("POPE")
    monkeypatch.setitem(cls.DATASET_MD5, "POPE", file_md5(lmudata / "POPE.tsv"))
    with caplog.at_level(logging.WARNING, logger="minimonkey_eval.datasets.local"):
        load_dataset("POPE", lmudata)
    assert not [r for r in caplog.records if "md5" in r.getMessage()]


def test_missing_columns_one_line(tmp_path, lmudata):
    df = pd.read_csv(lmudata / "OCRBench.tsv", sep="\t").drop(columns=["answer", "category"])
    df.to_csv(tmp_path / "OCRBench.tsv", sep="\t", index=False)
    with pytest.raises(DataError) as err:
        load_dataset("OCRBench", tmp_path)
    msg = _one_line(err)
    assert str(tmp_path / "OCRBench.tsv") in msg and "answer" in msg and "category" in msg


def test_missing_image_and_index_columns(tmp_path, lmudata):
    df = pd.read_csv(lmudata / "AI2D_TEST.tsv", sep="\t").drop(columns=["image", "index"])
    df.to_csv(tmp_path / "AI2D_TEST.tsv", sep="\t", index=False)
    with pytest.raises(DataError) as err:
        load_dataset("AI2D_TEST", tmp_path)
    msg = _one_line(err)
    assert "index" in msg and "image or image_path" in msg


def test_unknown_name_lists_known(lmudata):
    with pytest.raises(DataError) as err:
        load_dataset("NoSuchBench", lmudata)
    msg = _one_line(err)
    assert "NoSuchBench" in msg and all(n in msg for n in ALL_DATASETS)


def test_paper_column_alias(lmudata):
    assert load_dataset("AI2D", lmudata).dataset_name == "AI2D_TEST"


def test_default_root_is_lmudata_env(lmudata, monkeypatch):
    monkeypatch.setenv("LMUData", str(lmudata))
    assert load_dataset("TextVQA_VAL").dataset_name == "TextVQA_VAL"


def test_env_restored_and_images_under_data_root(tmp_path, lmudata, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(lmudata, root, ignore=shutil.ignore_patterns("images"))
    monkeypatch.delenv("LMUData", raising=False)
    ds = load_dataset("MME", root)
    assert "LMUData" not in os.environ
    path = Path(ds.build_prompt(ds.data.iloc[0])[0]["value"])
    assert path.is_relative_to(root / "images" / "MME") and path.exists()
    alt = load_dataset("MME", root, image_root=tmp_path / "imgs")
    path = Path(alt.build_prompt(alt.data.iloc[1])[0]["value"])
    assert path.is_relative_to(tmp_path / "imgs" / "MME") and path.exists()


def test_blocked_socket_loads_all_18_fixtures(lmudata, no_network):
    for name in ALL_DATASETS:
        ds = load_dataset(name, lmudata)
        assert len(ds) > 0
        msgs = ds.build_prompt(ds.data.iloc[len(ds) - 1])
        assert any(m["type"] == "image" for m in msgs)
