"""Prediction store and run lock: torn lines ignored and cut, parts merged, a second writer refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minimonkey_eval.eval.run.store import (
    PartWriter,
    PredictionStore,
    RunLock,
    RunLockedError,
    index_key,
    make_record,
    merge_records,
    read_records,
)


def test_append_reload_and_torn_last_line(tmp_path):
    path = tmp_path / "X.part0.jsonl"
    with PartWriter(path) as w:
        w.append([make_record(0, "a"), make_record(1, "b")])
        w.append([make_record("VD_chart_1_0", "c", True, "prompt: ValueError: bad image")])
    # a writer killed half-way through its next append
    with open(path, "ab") as f:
        f.write(b'{"index": 3, "predic')
    records = read_records(path)
    assert [r["index"] for r in records] == [0, 1, "VD_chart_1_0"]
    assert records[2]["failed"] and records[2]["reason"].startswith("prompt:")
    # the next writer cuts the torn tail before appending: the new record is not glued onto it
    with PartWriter(path) as w:
        w.append([make_record(3, "d")])
    assert [r["index"] for r in read_records(path)] == [0, 1, "VD_chart_1_0", 3]
    assert path.read_bytes().endswith(b"\n")
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_complete_json_without_newline_is_not_counted(tmp_path):
    """A last line that parses but lacks its newline is dropped by readers and writers alike (consistent)."""
    path = tmp_path / "X.part0.jsonl"
    path.write_text(json.dumps(make_record(0, "a")) + "\n" + json.dumps(make_record(1, "b")))
    assert [r["index"] for r in read_records(path)] == [0]
    with PartWriter(path) as w:
        w.append([make_record(1, "b2")])
    assert [r["prediction"] for r in read_records(path)] == ["a", "b2"]


def test_merge_prefers_success_then_first(tmp_path):
    store = PredictionStore(tmp_path, "MME")
    with store.writer(0) as w:
        w.append([make_record(0, "", True, "oom"), make_record(1, "first")])
    with store.writer(1) as w:
        w.append([make_record(0, "ok"), make_record(1, "second"), make_record(2, "x")])
    merged = store.load()
    assert {k: r["prediction"] for k, r in merged.items()} == {"0": "ok", "1": "first", "2": "x"}
    with store.writer(1) as w:   # a retry that fails again replaces the older failure, never a success
        w.append([make_record(2, "", True, "late failure")])
    assert store.load()["2"]["prediction"] == "x"
    assert merge_records([[make_record(5, "", True, "a")], [make_record(5, "", True, "b")]])["5"]["reason"] == "b"
    assert [p.name for p in store.part_paths()] == ["MME.part0.jsonl", "MME.part1.jsonl"]
    assert merge_records([]) == {}


def test_index_key_normalises_numpy_and_floats():
    np = pytest.importorskip("numpy")
    assert index_key(np.int64(7)) == index_key(7.0) == index_key("7") == "7"
    assert index_key("VD_chart_1_0") == "VD_chart_1_0"
    assert make_record(np.int64(3), None)["index"] == 3


def test_lock_refuses_a_second_process(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        code = ("import sys; from minimonkey_eval.eval.run.store import RunLock, RunLockedError\n"
                "try:\n    RunLock(sys.argv[1]).acquire()\nexcept RunLockedError as e:\n    print(e); sys.exit(3)\n")
        proc = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
        assert proc.returncode == 3, proc.stderr
        assert f"pid {os.getpid()}" in proc.stdout
        with pytest.raises(RunLockedError):
            RunLock(run_dir).acquire()   # flock is per open file description: refused in-process too
    RunLock(run_dir).acquire().release()  # free again once released
