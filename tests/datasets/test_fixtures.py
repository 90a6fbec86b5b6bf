"""Synthetic VLMEvalKit TSVs: every file loads with vlmeval's own dataset class, every row's prompt builds,
images decode under the data root, and the fields each vlmeval metric groups by are present."""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from minimonkey_eval.datasets.fixtures import (
    ALL_DATASETS,
    CIRCULAR_OFFSET,
    OCRBENCH_TYPES,
    write_sample_tsvs,
)
from minimonkey_eval.datasets.local import dataset_class, load_dataset
from minimonkey_eval.datasets.mme import MME_PERCEPTION, MME_REASONING
from minimonkey_eval.datasets.registry import DEFAULT_DATASETS, get_benchmark


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("LMUData")
    write_sample_tsvs(root)
    return root


def _tsv(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / f"{name}.tsv", sep="\t")


def test_writes_the_16_scored_and_2_submission_files(tmp_path):
    paths = write_sample_tsvs(tmp_path)
    assert set(paths) == set(DEFAULT_DATASETS) | {"DocVQA_TEST", "InfoVQA_TEST"}
    assert len(paths) == 18
    for name, path in paths.items():
        assert path == tmp_path / f"{name}.tsv" and path.stat().st_size > 0


def test_deterministic_given_seed(tmp_path):
    a = write_sample_tsvs(tmp_path / "a", datasets=["MME", "MMMU_DEV_VAL"], seed=3)
    b = write_sample_tsvs(tmp_path / "b", datasets=["MME", "MMMU_DEV_VAL"], seed=3)
    c = write_sample_tsvs(tmp_path / "c", datasets=["MME"], seed=4)
    assert a["MME"].read_bytes() == b["MME"].read_bytes()
    assert a["MMMU_DEV_VAL"].read_bytes() == b["MMMU_DEV_VAL"].read_bytes()
    assert a["MME"].read_bytes() != c["MME"].read_bytes()


def test_n_controls_the_size(tmp_path):
    path = write_sample_tsvs(tmp_path, datasets=["POPE", "MME"], n=3)
    assert len(_tsv(tmp_path, "POPE")) == 3
    assert len(_tsv(tmp_path, "MME")) == 6  # 3 images x (yes, no)
    assert set(path) == {"POPE", "MME"}


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_loads_with_vlmeval_class_and_every_prompt_builds(lmudata, name):
    ds = load_dataset(name, lmudata)
    assert type(ds) is dataset_class(name)
    assert ds.TYPE == get_benchmark(name).kind
    assert 6 <= len(ds) <= 30
    for i in range(len(ds)):
        msgs = ds.build_prompt(ds.data.iloc[i])
        texts = [m["value"] for m in msgs if m["type"] == "text"]
        images = [m["value"] for m in msgs if m["type"] == "image"]
        assert texts and images
        for path in images:
            assert Path(path).is_relative_to(lmudata / "images")
            with Image.open(path) as im:
                im.load()
                assert max(im.size) <= 900 and min(im.size) >= 32


def test_mme_pairs_and_both_super_categories(lmudata):
    df = _tsv(lmudata, "MME")
    for _, pair in df.groupby("image_path"):
        assert sorted(pair["answer"]) == ["No", "Yes"]
    cats = set(df["category"])
    assert cats & set(MME_PERCEPTION) and cats & set(MME_REASONING)
    assert cats <= set(MME_PERCEPTION) | set(MME_REASONING)


def test_hallusionbench_structured_index(lmudata):
    df = _tsv(lmudata, "HallusionBench")
    parts = [ix.split("_") for ix in df["index"]]
    assert all(len(p) == 6 and p[0] == c and p[1] == l2
               for p, c, l2 in zip(parts, df["category"], df["l2-category"]))
    figures = Counter((p[1], p[3], p[4]) for p in parts)   # fAcc groups
    questions = Counter((p[1], p[3], p[5]) for p in parts)  # qAcc groups
    assert min(figures.values()) == 2 and min(questions.values()) == 2
    assert set(df["category"]) == {"VD", "VS"}


def test_pope_splits(lmudata):
    cats = set(_tsv(lmudata, "POPE")["category"])
    assert {"adversarial", "popular", "random"} <= cats and any("," in c for c in cats)


def test_ocrbench_covers_every_question_type(lmudata):
    df = _tsv(lmudata, "OCRBench")
    assert set(df["category"]) == set(OCRBENCH_TYPES)
    assert all(isinstance(ast.literal_eval(a), list) for a in df["answer"])


def test_vqa_answers_are_list_literals(lmudata):
    for name in ("DocVQA_VAL", "InfoVQA_VAL", "TextVQA_VAL"):
        answers = [ast.literal_eval(a) for a in _tsv(lmudata, name)["answer"]]
        assert all(isinstance(a, list) and a for a in answers)
    assert all(len(ast.literal_eval(a)) == 10 for a in _tsv(lmudata, "TextVQA_VAL")["answer"])
    chart = _tsv(lmudata, "ChartQA_TEST")
    assert set(chart["split"]) == {"human", "augmented"}
    for name in ("DocVQA_TEST", "InfoVQA_TEST"):
        assert "answer" not in _tsv(lmudata, name).columns


def test_image_shapes_follow_the_benchmarks(lmudata):
    def sizes(name):
        ds = load_dataset(name, lmudata)
        out = []
        for i in range(len(ds)):
            for m in ds.build_prompt(ds.data.iloc[i]):
                if m["type"] == "image":
                    with Image.open(m["value"]) as im:
                        out.append(im.size)
        return out
    assert all(h > w for w, h in sizes("DocVQA_VAL"))
    assert all(h >= 2 * w for w, h in sizes("InfoVQA_VAL"))
    assert all(w <= 360 and h <= 240 for w, h in sizes("OCRBench")[:6])  # recognition crops
    assert all(w * 9 == h * 16 for w, h in sizes("RealWorldQA"))


def test_circular_rows(lmudata):
    for name in ("CCBench", "MMBench_DEV_EN", "MMBench_DEV_CN"):
        df = _tsv(lmudata, name).set_index("index")
        mains = [i for i in df.index if i < CIRCULAR_OFFSET]
        for i in mains:
            letters = [c for c in "ABCD" if not pd.isna(df.loc[i, c])]
            correct = df.loc[i, df.loc[i, "answer"]]
            for k in range(1, len(letters)):
                rot = df.loc[i + k * CIRCULAR_OFFSET]
                assert rot[rot["answer"]] == correct
                assert str(rot["image"]) == str(i)  # image stored once, referenced by index
        assert len(df) == sum(sum(not pd.isna(df.loc[i, c]) for c in "ABCD") for i in mains)
    en, cn = _tsv(lmudata, "MMBench_DEV_EN"), _tsv(lmudata, "MMBench_DEV_CN")
    assert list(en["image"]) == list(cn["image"])  # shared images/MMBench folder in vlmeval
    assert list(en["index"]) == list(cn["index"]) and list(en["question"]) != list(cn["question"])
    assert set(en["split"]) == {"dev"} and en["l2-category"].nunique() == 6


def test_mmmu_multi_image_and_open_rows(lmudata):
    ds = load_dataset("MMMU_DEV_VAL", lmudata)
    kinds = [[m["type"] for m in ds.build_prompt(ds.data.iloc[i])] for i in range(len(ds))]
    assert ["text", "image", "text", "image", "text"] in kinds  # <image 1> ... <image 2> interleaved
    assert set(ds.data["split"]) == {"dev", "validation"}
    assert (ds.data["question_type"] == "open").any() and ds.data["A"].isna().any()


def test_mathvista_fields(lmudata):
    df = _tsv(lmudata, "MathVista_MINI")
    assert set(df["question_type"]) == {"multi_choice", "free_form"}
    assert {"integer", "float", "text", "list"} <= set(df["answer_type"])
    mc = df[df["question_type"] == "multi_choice"]
    for _, row in mc.iterrows():
        choices = ast.literal_eval(row["choices"])
        assert choices["ABCD".index(row["answer_option"])] == str(row["answer"])
    assert df.loc[df["answer_type"] == "float", "precision"].notna().all()
    assert all(isinstance(ast.literal_eval(s), list) for s in df["skills"])
    assert df["task"].nunique() == 5
