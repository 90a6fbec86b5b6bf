"""Scoring through vlmeval's own evaluate(): our headline equals the number in the score file vlmeval wrote
(read back here with plain pandas/json), in the paper's units, for one known prediction file per dataset."""
from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pandas as pd
import pytest
from helpers.known_answers import (
    MODEL,
    expected_headline,
    is_right,
    right_answer,
    write_predictions,
)

from minimonkey_eval.datasets.fixtures import ALL_DATASETS, CIRCULAR_OFFSET, write_sample_tsvs
from minimonkey_eval.datasets.registry import DEFAULT_DATASETS, get_benchmark
from minimonkey_eval.eval.scoring import (
    OFFLINE_MATHVISTA,
    ScoreResult,
    judge_settings,
    mathvista_rule_extract,
    score_dataset,
    write_score_sheets,
)


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> dict[str, tuple[ScoreResult, Path, pd.DataFrame]]:
    """Every fixture dataset scored offline with the network blocked."""
    root = tmp_path_factory.mktemp("LMUData")
    work = tmp_path_factory.mktemp("work")
    write_sample_tsvs(root)

    def refuse(*a, **k):
        raise RuntimeError("network access attempted")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for target, attr in ((socket.socket, "connect"), (socket, "create_connection"), (socket, "getaddrinfo")):
            mp.setattr(target, attr, refuse)
        for name in ALL_DATASETS:
            eval_file = write_predictions(root, work, name)
            original = pd.read_excel(eval_file)
            out[name] = (score_dataset(name, eval_file, data_root=root), eval_file, original)
    out["_root"] = root
    return out


EXPECTED_METRICS = {
    "MME": {"perception", "reasoning", "OCR", "code_reasoning", "numerical_calculation"},
    "RealWorldQA": {"split=none|Overall"},
    "AI2D_TEST": {"split=none|Overall", "split=none|lifeCycles"},
    "CCBench": {"split=none|Overall", "split=none|Calligraphy Painting"},
    "SEEDBench_IMG": {"split=none|Overall", "split=none|Scene Understanding", "split=none|Text Understanding"},
    "HallusionBench": {"split=Overall|aAcc", "split=Overall|fAcc", "split=Overall|qAcc", "split=VD|aAcc",
                       "split=chart|qAcc"},
    "POPE": {"split=Overall|Overall", "split=adversarial|Overall", "split=popular|acc", "split=random|recall"},
    "MathVista_MINI": {"Task&Skill=Overall|acc", "Task&Skill=geometry problem solving|acc"},
    "DocVQA_VAL": {"Overall"},
    "ChartQA_TEST": {"Overall", "human", "augmented"},
    "InfoVQA_VAL": {"Overall"},
    "TextVQA_VAL": {"Overall"},
    "OCRBench": {"Final Score", "Text Recognition", "Scene Text-centric VQA", "Doc-oriented VQA",
                 "Key Information Extraction", "Handwritten Mathematical Expression Recognition"},
    "MMMU_DEV_VAL": {"split=validation|Overall", "split=dev|Overall"},
    "MMBench_DEV_EN": {"split=dev|Overall", "split=dev|CP", "split=dev|FP-S", "split=dev|FP-C", "split=dev|LR",
                       "split=dev|RR", "split=dev|AR", "split=dev|ocr"},
    "MMBench_DEV_CN": {"split=dev|Overall", "split=dev|CP", "split=dev|AR"},
}


@pytest.mark.parametrize("name", DEFAULT_DATASETS)
def test_headline_equals_vlmeval_score_file(scored, name):
    result, eval_file, _ = scored[name]
    expected = expected_headline(name, eval_file.parent)
    assert result.headline == pytest.approx(expected, abs=1e-9)
    assert 0 < result.headline < 100 or name in ("MME", "OCRBench")  # some right, some wrong


@pytest.mark.parametrize("name", DEFAULT_DATASETS)
def test_subscores_long_format(scored, name):
    result, _, _ = scored[name]
    subs = result.subscores
    assert list(subs.columns) == ["dataset", "metric", "value"]
    assert set(subs["dataset"]) == {name}
    assert EXPECTED_METRICS[name] <= set(subs["metric"])
    head = subs.loc[subs["metric"] == "headline", "value"]
    assert len(head) == 1 and head.iloc[0] == pytest.approx(result.headline)
    assert subs["metric"].is_unique
    assert all(p.exists() for p in result.score_files)


def _fraction_right(data: pd.DataFrame) -> float:
    return sum(is_right(i, data.iloc[i]) for i in range(len(data))) / len(data)


@pytest.mark.parametrize("name", ["RealWorldQA", "AI2D_TEST", "SEEDBench_IMG", "DocVQA_VAL", "InfoVQA_VAL",
                                  "TextVQA_VAL", "ChartQA_TEST"])
def test_headline_in_percent_matches_hand_count(scored, name):
    result, _, original = scored[name]
    assert result.headline == pytest.approx(100 * _fraction_right(original))


def test_paper_units(scored):
    mme, ocr, pope = scored["MME"][0], scored["OCRBench"][0], scored["POPE"][0]
    metrics = dict(zip(mme.subscores["metric"], mme.subscores["value"]))
    assert mme.headline == pytest.approx(metrics["perception"] + metrics["reasoning"])
    assert 100 < mme.headline <= 2800
    assert ocr.headline == pytest.approx(ocr.per_sample["score"].sum())  # points: one per right answer
    assert ocr.headline == 7  # the pattern gets 7 of the 10 questions right
    # POPE headline is the F1 column, not accuracy
    p = dict(zip(pope.subscores["metric"], pope.subscores["value"]))
    assert pope.headline == p["split=Overall|Overall"] != p["split=Overall|acc"]
    # MCQ: vlmeval writes fractions, the paper (and we) percent
    mmb = dict(zip(scored["MMBench_DEV_EN"][0].subscores["metric"], scored["MMBench_DEV_EN"][0].subscores["value"]))
    assert mmb["split=dev|Overall"] == pytest.approx(scored["MMBench_DEV_EN"][0].headline) and mmb["headline"] > 1


def test_circular_groups_need_every_rotation(scored):
    result, _, original = scored["MMBench_DEV_EN"]
    mains = original[original["index"] < CIRCULAR_OFFSET]
    per = result.per_sample.set_index("index")["score"]
    assert sorted(per.index) == sorted(mains["index"])
    assert per[1] == 0  # its rotation 1 was answered wrong
    assert per[0] == 1 and per[2] == 0
    assert result.headline == pytest.approx(100 * per.mean())


@pytest.mark.parametrize("name", ["DocVQA_VAL", "InfoVQA_VAL", "TextVQA_VAL", "ChartQA_TEST", "RealWorldQA",
                                  "MathVista_MINI", "POPE"])
def test_per_sample_mean_matches_headline(scored, name):
    result, _, original = scored[name]
    per = result.per_sample
    assert list(per.columns) == ["index", "score"] and len(per) == len(original)
    assert per["score"].between(0, 1).all()
    if name != "POPE":  # POPE's headline is F1, not mean accuracy
        assert 100 * per["score"].mean() == pytest.approx(result.headline)


def test_yn_unknown_prediction_counts_wrong(scored):
    per = scored["MME"][0].per_sample
    assert per["score"].iloc[1] == 0


def test_mathvista_offline_extraction_marked(scored):
    result, eval_file, _ = scored["MathVista_MINI"]
    assert result.extraction == OFFLINE_MATHVISTA == "rule-based (offline)"
    assert "offline" in result.notes
    assert any(p.name.endswith("_rule_extract_score.csv") for p in result.score_files)
    storage = pd.read_excel(eval_file.parent / f"{MODEL}_MathVista_MINI_rule_extract.xlsx")
    assert {"res", "log"} <= set(storage.columns)


def test_mathvista_rule_extract_cases():
    base = dict(question_type="free_form", choices=None, answer_option=None, precision=None)
    integer = pd.Series(dict(base, answer_type="integer", answer="12", prediction="I count 3, then 12 in total."))
    assert mathvista_rule_extract(integer) == ("12", "Rule-based extraction (offline)")
    flt = pd.Series(dict(base, answer_type="float", answer="0.57", precision=2.0, prediction="about 0.5714"))
    assert mathvista_rule_extract(flt)[0] == "0.57"
    mc = pd.Series(dict(question_type="multi_choice", answer_type="text", answer="45", answer_option="B",
                        choices="['30', '45', '60', '75']", precision=None, prediction="The answer is (C) 60"))
    assert mathvista_rule_extract(mc)[0] == "C"
    right = pd.Series(dict(base, answer_type="integer", answer="7", prediction="7"))
    assert mathvista_rule_extract(right) == ("7", "Prefetch succeed")


def test_offline_extraction_labels():
    assert judge_settings(get_benchmark("MME"), None) == ({"model": "exact_matching"}, "exact_matching")
    assert judge_settings(get_benchmark("AI2D"), None)[0] == {"model": "exact_matching"}
    assert judge_settings(get_benchmark("DocVQA"), None) == ({}, "rule-based metric")
    assert judge_settings(get_benchmark("MathVista"), None) == (None, "rule-based (offline)")
    kwargs, label = judge_settings(get_benchmark("MathVista"), {"model": "gpt-4o-mini", "nproc": 2})
    assert kwargs == {"model": "gpt-4o-mini", "nproc": 2} and label == "judge gpt-4o-mini"
    assert judge_settings(get_benchmark("POPE"), "gpt-4o-mini")[0] == {"model": "gpt-4o-mini"}


def test_judge_is_passed_through_to_vlmeval(scored, tmp_path, monkeypatch):
    from minimonkey_eval.datasets.local import dataset_class

    cls = dataset_class("POPE")
    original = cls.evaluate
    seen = {}

    def spy(self, eval_file, **kwargs):
        seen.update(kwargs)
        return original(self, eval_file, model="exact_matching")
    monkeypatch.setattr(cls, "evaluate", spy)
    eval_file = write_predictions(scored["_root"], tmp_path, "POPE")
    result = score_dataset("POPE", eval_file, judge={"model": "gpt-4o-mini", "nproc": 2}, data_root=scored["_root"])
    assert seen == {"model": "gpt-4o-mini", "nproc": 2}
    assert result.extraction == "judge gpt-4o-mini"


def test_rescoring_changed_predictions_ignores_stale_caches(scored, tmp_path):
    root = scored["_root"]

    def all_right(name, data):
        return [right_answer(name, data.iloc[i]) for i in range(len(data))]
    for name in ("POPE", "MMBench_DEV_EN"):
        eval_file = write_predictions(root, tmp_path, name)
        first = score_dataset(name, eval_file, data_root=root).headline
        write_predictions(root, tmp_path, name, all_right)
        os.utime(eval_file)  # newer than vlmeval's caches
        second = score_dataset(name, eval_file, data_root=root).headline
        assert first < 100 and second == 100


@pytest.mark.parametrize("name", ["DocVQA_TEST", "InfoVQA_TEST"])
def test_submission_only(scored, name):
    result, eval_file, original = scored[name]
    assert math.isnan(result.headline)
    assert "submission" in result.notes
    (path,) = result.score_files
    records = json.loads(path.read_text())
    assert [set(r) for r in records] == [{"questionId", "answer"}] * len(original)
    assert [r["questionId"] for r in records] == [int(i) for i in original["index"]]
    assert all(isinstance(r["questionId"], int) and isinstance(r["answer"], str) for r in records)
    assert records[0]["answer"] == str(original["prediction"][0])


def test_write_score_sheets(scored, tmp_path):
    result = scored["OCRBench"][0]
    csv_path, xlsx_path = write_score_sheets(result, tmp_path / "sheets")
    assert csv_path.name == "OCRBench_score.csv" and xlsx_path.name == "OCRBench_score.xlsx"
    csv = pd.read_csv(csv_path)
    assert list(csv.columns[:3]) == ["dataset", "metric", "value"]
    assert csv.set_index("metric").loc["headline", "value"] == result.headline
    xlsx = pd.read_excel(xlsx_path, sheet_name=None)
    assert set(xlsx) == {"scores", "notes"}
    assert len(xlsx["scores"]) == len(result.subscores)
    mv = write_score_sheets(scored["MathVista_MINI"][0], tmp_path / "sheets")[0]
    assert set(pd.read_csv(mv)["extraction"]) == {"rule-based (offline)"}


def test_a_split_headline_without_that_split_is_missing_not_another_splits_number():
    """MMMU's headline is the validation split's: a run whose rows are all dev (`--limit 2`) has no headline (NaN,
    shown empty), never the dev number; a benchmark without a headline split still refuses a missing key."""
    from minimonkey_eval.datasets.local import DataError
    from minimonkey_eval.eval.scoring import headline_from

    mmmu = get_benchmark("MMMU_DEV_VAL")
    assert math.isnan(headline_from(mmmu, {"split=dev|Overall": 0.5, "split=dev|Art": 0.5}))
    assert headline_from(mmmu, {"split=dev|Overall": 0.5, "split=validation|Overall": 0.25}) == 25.0
    with pytest.raises(DataError, match="matches nothing"):
        headline_from(get_benchmark("AI2D_TEST"), {"split=dev|Art": 0.5})
