"""Trust at the edges, second round: every JSON / CSV side file of a run or sweep folder goes through one typed reader.

``{DATASET}_samples.csv`` (``eval/samples_sheet.py``), ``sweep.json`` (``eval/sweep/state.py``, through
``models/side_files.read_side_file``) and ``run.json`` (``eval/run/record.py``): any other shape is one ``error:``
line naming the file and the column / field (``compare``, ``sweep``), or in the report one warning naming it and the
folder left out. The property tests feed random JSON / CSV and accept nothing but a one-line ``UserFacingError``.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path

import pytest
from helpers.runner_utils import cli_call as _cli
from helpers.runner_utils import one_error_line as _one_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.report.collect import collect_report, load_runs
from minimonkey_eval.eval.runfiles.record import RunRecord, read_run_record
from minimonkey_eval.eval.samples_sheet import SAMPLE_COLUMNS, read_samples_csv
from minimonkey_eval.eval.stats.units import load_units
from minimonkey_eval.eval.sweep.grid import table
from minimonkey_eval.eval.sweep.state import STATE, label, nearest_point, read_state

VQA = "OCRBench"


def _sheet(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(SAMPLE_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _good_rows(n: int = 6) -> list[dict]:
    return [{"index": i, "question": f"q{i}", "answer": "a", "prediction": "a" if i % 2 else "b",
             "score": 1 if i % 2 else 0, "image_path": f"images/{i}.png", "failed": False, "reason": ""}
            for i in range(1, n + 1)]


def _run_folder(work: Path, name: str, sheet: bytes | None = None) -> Path:
    d = work / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"run_name": name, "model": "MiniMonkey", "label": "Mini-Monkey",
                                            "msac": True, "scm": False, "datasets": [VQA], "results": {}}))
    (d / f"{VQA}_samples.csv").write_bytes(_sheet(_good_rows()) if sheet is None else sheet)
    return d


def _with(**cells) -> bytes:
    rows = _good_rows()
    rows[1].update(cells)
    return _sheet(rows)


BAD_SHEETS = {
    "0-byte": (b"", "empty file"),
    "wrong columns": (_sheet(_good_rows()).replace(b",score,", b",points,", 1), "column 'score' missing"),
    "score not a number": (_with(score="high"), "column 'score', row 2"),
    "score not finite": (_with(score="inf"), "column 'score', row 2"),
    "failed not a boolean": (_with(failed="maybe"), "column 'failed', row 2"),
    "empty index": (_with(index=""), "column 'index', row 2"),
    "not UTF-8": (_sheet(_good_rows()) + b"7,\xff\xfe,a,a,1,,False,\n", "not UTF-8"),
}


# ------------------------------------------------------------------------------------------------ samples.csv
@pytest.mark.parametrize("case", list(BAD_SHEETS))
def test_a_samples_sheet_of_another_shape_is_one_line_in_compare(tmp_path, capsys, case):
    sheet, needle = BAD_SHEETS[case]
    a, b = _run_folder(tmp_path, "a"), _run_folder(tmp_path, "b", sheet)
    before = (a / f"{VQA}_samples.csv").read_bytes()
    _one_line(*_cli(["compare", a, b, "--data", VQA], capsys), str(b / f"{VQA}_samples.csv"), needle)
    assert (a / f"{VQA}_samples.csv").read_bytes() == before and (b / f"{VQA}_samples.csv").read_bytes() == sheet


@pytest.mark.parametrize("case", list(BAD_SHEETS))
def test_a_samples_sheet_of_another_shape_is_one_warning_in_the_report(tmp_path, capsys, caplog, case):
    sheet, needle = BAD_SHEETS[case]
    _run_folder(tmp_path, "good")
    bad = _run_folder(tmp_path, "bad", sheet)
    with caplog.at_level(logging.WARNING):
        rc, err = _cli(["report", "--work-dir", tmp_path], capsys)
    assert rc == 0 and "Traceback" not in err, err
    warned = [r.getMessage() for r in caplog.records if str(bad / f"{VQA}_samples.csv") in r.getMessage()]
    assert len(warned) == 1 and needle in warned[0] and "skipping run folder" in warned[0], warned
    assert [r.run_name for r in collect_report(tmp_path).runs] == ["good"]


def test_the_runners_sheet_reads_typed(tmp_path):
    path = _run_folder(tmp_path, "r") / f"{VQA}_samples.csv"
    df = read_samples_csv(path)
    assert df["score"].dtype == float and df["failed"].dtype == bool
    assert list(df["index"]) == [str(i) for i in range(1, 7)] and df["score"].sum() == 3


# ------------------------------------------------------------------------------------------------ sweep.json
def _row(**change) -> dict:
    row = {"model": "MiniMonkey", "dataset": VQA, "tiles": "vlmevalkit", "scm": "off", "headline": 700.0,
           "label": "Mini-Monkey", "setting": {"limit": 2}}
    row.update(change)
    return row


BAD_STATES = {
    "0-byte": ("", "invalid JSON"),
    "a list": ("[]", "field (top level)"),
    "rows a list": (json.dumps({"rows": []}), "field rows"),
    "headline text": (json.dumps({"rows": {"p": _row(headline="700")}}), "field rows.p.headline"),
    "no tiles": (json.dumps({"rows": {"p": {k: v for k, v in _row().items() if k != "tiles"}}}), "field rows.p.tiles"),
    "setting a number": (json.dumps({"rows": {"p": _row(setting=3)}}), "field rows.p.setting"),
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_a_sweep_json_of_another_shape_is_one_line_in_sweep(tmp_path, capsys, case):
    text, needle = BAD_STATES[case]
    out = tmp_path / "sweep"
    out.mkdir()
    (out / STATE).write_text(text)
    _one_line(*_cli(["sweep", "--model", "MiniMonkey", "--data", VQA, "--out", out, "--device", "cpu"], capsys),
              str(out / STATE), needle, "delete it to recompute")
    assert (out / STATE).read_text() == text


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_a_sweep_json_of_another_shape_is_one_warning_in_the_report(tmp_path, capsys, caplog, case):
    text, needle = BAD_STATES[case]
    _run_folder(tmp_path, "good")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / STATE).write_text(text)
    with caplog.at_level(logging.WARNING):
        rc, err = _cli(["report", "--work-dir", tmp_path], capsys)
    assert rc == 0 and "Traceback" not in err, err
    warned = [r.getMessage() for r in caplog.records if STATE in r.getMessage()]
    assert len(warned) == 1 and needle in warned[0] and "skipping sweep folder" in warned[0], warned


# ------------------------------------------------------------------------------------------------ properties
_PROPS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_json = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | _text,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=10)
_ROW_KEYS = ("model", "dataset", "tiles", "scm", "headline", "label", "setting", "rows", "ci_lo", "card_setting")
_RECORD_KEYS = tuple(f.name for f in __import__("dataclasses").fields(RunRecord) if f.name != "extra")
_state = _json | st.fixed_dictionaries({"rows": st.dictionaries(_text, st.dictionaries(
    st.sampled_from(_ROW_KEYS), _json | st.sampled_from(["OCRBench", "MiniMonkey", "off", 1.5]), max_size=8),
    max_size=3)})
_record = _json | st.dictionaries(st.sampled_from(_RECORD_KEYS) | _text, _json, max_size=8)
_cell = _text | st.sampled_from(["", "1", "0", "0.5", "True", "False", "nan", "inf", "1e400", '"', ",", "\n", "\r"])
_header = (st.permutations(list(SAMPLE_COLUMNS)).map(list) | st.lists(st.sampled_from(SAMPLE_COLUMNS) | _text,
                                                                       min_size=1, max_size=10))


def _one_line_error(exc: UserFacingError, name: str) -> None:
    text = str(exc)
    assert len(text.splitlines()) == 1 and name in text, text


@_PROPS
@given(value=_state)
def test_random_json_in_sweep_json_is_one_line(tmp_path_factory, value):
    out = tmp_path_factory.mktemp("sweep")
    (out / STATE).write_text(json.dumps(value))
    try:
        state = read_state(out)
    except UserFacingError as exc:
        _one_line_error(exc, STATE)
        return
    for row in state["rows"].values():
        label(row)
    nearest_point(out, VQA, 800.0, state=state)
    nearest_point(out, VQA, 800.0, model="MiniMonkey")
    table(state)


@_PROPS
@given(value=_record)
def test_random_json_in_run_json_is_one_line(tmp_path_factory, value):
    work = tmp_path_factory.mktemp("runs")
    (work / "r").mkdir()
    (work / "r" / "run.json").write_text(json.dumps(value))
    try:
        read_run_record(work / "r")
    except UserFacingError as exc:
        _one_line_error(exc, "run.json")
    load_runs(work)   # the report: a run.json it cannot use is a warning, never an exception


@_PROPS
@given(header=_header, rows=st.lists(st.lists(_cell, max_size=10), max_size=4), raw=st.none() | _text)
def test_random_csv_in_samples_csv_is_one_line(tmp_path_factory, header, rows, raw):
    run_dir = tmp_path_factory.mktemp("run")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    (run_dir / f"{VQA}_samples.csv").write_text(raw if raw is not None else out.getvalue(), encoding="utf-8")
    try:
        df = read_samples_csv(run_dir / f"{VQA}_samples.csv")
    except UserFacingError as exc:
        _one_line_error(exc, f"{VQA}_samples.csv")
        return
    assert df["score"].map(lambda v: math.isnan(v) or math.isfinite(v)).all()
    try:
        load_units(run_dir, VQA, "MiniMonkey")
    except UserFacingError as exc:
        assert len(str(exc).splitlines()) == 1, str(exc)
