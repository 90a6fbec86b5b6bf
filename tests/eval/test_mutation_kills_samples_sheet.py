"""The per-sample sheet's reader (``eval/samples_sheet.py``) on cases with known answers: every text a ``failed`` cell
may hold, scores at the edges, text columns kept as written, the cache that must hand out copies and notice a changed
file, and the exact one line of each sheet of another shape (file, column, row, the value cut at 40 characters)."""
from __future__ import annotations

import csv
import io
import math
import os

import pytest

from minimonkey_eval.eval.samples_sheet import SAMPLE_COLUMNS, SamplesError, read_samples_csv

FIX = "rerun the same `minimonkey-eval run` command to write it again"


def sheet(tmp_path, rows: list[dict], columns=SAMPLE_COLUMNS, name: str = "OCRBench_samples.csv"):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / name
    path.write_bytes(out.getvalue().encode())
    return path


def row(**cells) -> dict:
    base = {"index": "1", "question": "q", "answer": "a", "prediction": "a", "score": "1", "image_path": "",
            "failed": "False", "reason": ""}
    return dict(base, **cells)


def refused(path) -> str:
    with pytest.raises(SamplesError) as exc:
        read_samples_csv(path)
    return str(exc.value)


@pytest.mark.parametrize("text, expected", [
    ("True", True), ("true", True), (" YES ", True), ("1", True), ("1.0", True), ("yes", True),
    ("False", False), ("false", False), ("0", False), ("no", False), ("0.0", False), ("", False), ("  ", False),
])
def test_every_failed_text_reads_as_its_boolean(tmp_path, text, expected):
    df = read_samples_csv(sheet(tmp_path, [row(index="1"), row(index="2", failed=text)]))
    assert list(df["failed"]) == [False, expected] and df["failed"].dtype == bool


@pytest.mark.parametrize("text, expected", [("1", 1.0), ("0", 0.0), ("0.25", 0.25), (" 1e-3 ", 0.001), ("-2", -2.0)])
def test_a_score_reads_as_its_number(tmp_path, text, expected):
    df = read_samples_csv(sheet(tmp_path, [row(score=text)]))
    assert df["score"].tolist() == [expected] and df["score"].dtype == float


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_score_is_nan(tmp_path, text):
    df = read_samples_csv(sheet(tmp_path, [row(score="1"), row(index="2", score=text)]))
    assert df["score"].iloc[0] == 1.0 and math.isnan(df["score"].iloc[1])


def test_text_columns_stay_as_written(tmp_path):
    df = read_samples_csv(sheet(tmp_path, [row(index="007", answer="NA", prediction="null", reason="None")]))
    assert (df.loc[0, "index"], df.loc[0, "answer"], df.loc[0, "prediction"], df.loc[0, "reason"]) == \
        ("007", "NA", "null", "None")


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "high", "1,5"])
def test_a_score_that_is_not_a_finite_number_names_the_row(tmp_path, text):
    path = sheet(tmp_path, [row(), row(index="2"), row(index="3", score=text)])
    assert refused(path) == f"{path}: column 'score', row 3: {text!r} is not a finite number; {FIX}"


def test_a_failed_cell_that_is_not_a_boolean_names_the_row(tmp_path):
    path = sheet(tmp_path, [row(), row(index="2", failed="maybe")])
    assert refused(path) == f"{path}: column 'failed', row 2: 'maybe' is not True/False; {FIX}"


@pytest.mark.parametrize("width", [37, 38, 39])
def test_the_value_shown_is_cut_after_40_characters(tmp_path, width):
    text = "x" * width             # ascii() adds the two quotes
    path = sheet(tmp_path, [row(failed=text)])
    shown = repr(text) if width <= 38 else repr(text)[:37] + "..."
    assert refused(path) == f"{path}: column 'failed', row 1: {shown} is not True/False; {FIX}"


@pytest.mark.parametrize("index", ["", "  "])
def test_an_empty_index_names_the_row(tmp_path, index):
    path = sheet(tmp_path, [row(), row(index=index)])
    assert refused(path) == f"{path}: column 'index', row 2: empty; {FIX}"


@pytest.mark.parametrize("content", [b"", b"  \n\n"])
def test_an_empty_file_says_its_size(tmp_path, content):
    path = tmp_path / "OCRBench_samples.csv"
    path.write_bytes(content)
    assert refused(path) == f"{path}: empty file ({len(content)} bytes), not a per-sample sheet; {FIX}"


def test_a_file_that_is_not_utf8(tmp_path):
    path = sheet(tmp_path, [row()])
    path.write_bytes(path.read_bytes() + b"2,\xff,a,a,1,,False,\n")
    assert refused(path) == f"{path}: not UTF-8 text; {FIX}"


def test_a_file_that_is_not_csv(tmp_path):
    path = tmp_path / "OCRBench_samples.csv"
    path.write_bytes(b"a,b\n1,2\n1,2,3,4\n")
    assert refused(path) == (f"{path}: not a CSV sheet (Error tokenizing data. C error: Expected 2 fields in line 3, "
                             f"saw 4); {FIX}")


def test_the_first_missing_column_is_named(tmp_path):
    columns = [c for c in SAMPLE_COLUMNS if c not in ("prediction", "reason")]
    path = sheet(tmp_path, [{c: row()[c] for c in columns}], columns=columns)
    assert refused(path) == (f"{path}: column 'prediction' missing (a per-sample sheet has the columns "
                             f"{', '.join(SAMPLE_COLUMNS)}); {FIX}")


def test_extra_columns_and_another_order_are_read(tmp_path):
    columns = list(reversed(SAMPLE_COLUMNS)) + ["extra"]
    df = read_samples_csv(sheet(tmp_path, [dict(row(), extra="e")], columns=columns))
    assert df.loc[0, "extra"] == "e" and df.loc[0, "score"] == 1.0 and bool(df.loc[0, "failed"]) is False


def test_each_call_gets_its_own_copy(tmp_path):
    path = sheet(tmp_path, [row(score="0.5")])
    first = read_samples_csv(path)
    first.loc[0, "score"] = 99.0
    first.loc[0, "prediction"] = "changed"
    again = read_samples_csv(path)
    assert again.loc[0, "score"] == 0.5 and again.loc[0, "prediction"] == "a"


def test_a_rewritten_file_is_read_anew(tmp_path):
    path = sheet(tmp_path, [row(score="0")])
    assert read_samples_csv(path)["score"].tolist() == [0.0]
    stamp = os.stat(path).st_mtime_ns
    sheet(tmp_path, [row(score="1")])                      # same size: only the modification time tells
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    assert read_samples_csv(path)["score"].tolist() == [1.0]
    sheet(tmp_path, [row(score="0.75")])                   # same modification time: the size tells
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    assert read_samples_csv(path)["score"].tolist() == [0.75]


def test_a_bad_file_is_refused_again_after_it_is_mended_and_broken(tmp_path):
    path = sheet(tmp_path, [row(failed="maybe")])
    assert "row 1" in refused(path)
    sheet(tmp_path, [row(failed="True ")])
    assert read_samples_csv(path)["failed"].tolist() == [True]
