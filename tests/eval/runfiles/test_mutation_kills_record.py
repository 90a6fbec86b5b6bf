"""The run record's semantics on cases with known answers (what resume and the report rely on), written to kill the
mutants `scripts/mutation.sh record` found unchecked: resuming carries over exactly what a run accumulated, the
identity is exactly its fields, an unstarted folder is told from a started one, and the file's bytes are readable
JSON (two-space indent, non-ASCII kept, paths as text)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.eval.runfiles.record import (
    IDENTITY_FIELDS,
    RunRecord,
    RunRecordError,
    read_run_record,
    write_run_record,
)


def _old() -> RunRecord:
    return RunRecord(run_name="r", model="MiniMonkey", datasets=["MME", "OCRBench"],
                     tiles={"MME": {"tiles": "a"}, "OCRBench": {"tiles": "b"}},
                     results={"MME": {"headline": 1.0}}, device="cuda:0", params_b=2.2, params_source="old",
                     timings={"first_started": "t0", "started": "t1", "finished": "t2", "datasets": {"MME": {"s": 1}}},
                     extra={"kept": 1, "both": "old"})


def test_resumed_by_carries_over_what_the_run_accumulated():
    fresh = RunRecord(run_name="r", model="MiniMonkey", datasets=["POPE"], tiles={"OCRBench": {"tiles": "new"}},
                      device=None, params_b=None, params_source=None,
                      timings={"first_started": "f0", "started": "f1"}, extra={"both": "new", "mine": 2})
    out = _old().resumed_by(fresh)
    assert out.datasets == ["MME", "OCRBench"]                                   # the old list, not the new one
    assert out.tiles == {"MME": {"tiles": "a"}, "OCRBench": {"tiles": "new"}}    # this invocation's settings win
    assert out.results == {"MME": {"headline": 1.0}}
    assert out.timings == {"first_started": "t0", "started": "f1", "finished": None, "datasets": {"MME": {"s": 1}}}
    assert (out.device, out.params_b, out.params_source) == ("cuda:0", 2.2, "old")  # recorded once the model loaded
    assert out.extra == {"kept": 1, "both": "new", "mine": 2}
    assert out.run_name == "r" and out.model == "MiniMonkey"


def test_resumed_by_prefers_what_this_invocation_knows():
    fresh = RunRecord(device="cpu", params_b=0.0, params_source="new", timings={"started": "f1", "first_started": "f0"})
    old = RunRecord(timings={"started": "t1"})        # a record without first_started or datasets: filled in
    out = old.resumed_by(fresh)
    assert (out.device, out.params_b, out.params_source) == ("cpu", 0.0, "new")   # 0.0 is a value, not "unset"
    assert out.timings == {"started": "f1", "finished": None, "first_started": "f0", "datasets": {}}
    assert old.datasets == [] and out.datasets is not old.datasets                # a copy, not the same list


def test_identity_is_exactly_the_identity_fields():
    record = RunRecord(model="m", msac=True, checkpoint_sha256="abc", scm=True, scm_ratio=0.5, dtype="bf16",
                       attn="sdpa", device="cuda:0", batch_size=8)
    identity = record.identity()
    assert list(identity) == list(IDENTITY_FIELDS)
    assert identity["model"] == "m" and identity["checkpoint_sha256"] == "abc" and identity["scm_ratio"] == 0.5
    assert "device" not in identity and "batch_size" not in identity         # how it ran is not what it predicts


def test_is_unstarted_only_without_results_datasets_or_a_prediction_byte(tmp_path):
    layout = RunLayout(tmp_path)
    assert RunRecord().is_unstarted(layout)
    assert not RunRecord(results={"MME": {}}).is_unstarted(layout)
    assert not RunRecord(datasets=["MME"]).is_unstarted(layout)
    layout.predictions_dir.mkdir()
    layout.part("MME", 0).write_text("")
    assert RunRecord().is_unstarted(layout)                                   # an empty part file is no prediction
    layout.part("MME", 0).write_text("{}\n")
    assert not RunRecord().is_unstarted(layout)


def test_optional_blocks_are_left_out_only_when_unset():
    out = RunRecord(params_b=2.2, params_source="config").to_dict()       # demo_note, vlmeval... unset before them
    assert out["params_b"] == 2.2 and out["params_source"] == "config"
    assert "demo_note" not in out and "vlmeval" not in out and "prediction_prefix" not in out


def test_update_sets_known_fields_and_keeps_unknown_ones_in_extra():
    record = RunRecord()
    record.update({"model": "m", "future_field": [1, 2], "limit": 4})
    assert record.model == "m" and record.limit == 4 and record.extra == {"future_field": [1, 2]}
    assert record.to_dict()["future_field"] == [1, 2]


def test_a_key_named_extra_in_the_file_is_kept_as_an_unknown_key(tmp_path):
    layout = RunLayout(tmp_path)
    layout.run_json.write_text(json.dumps({"run_name": "r", "extra": {"a": 1}, "zz": 2}))
    record = read_run_record(tmp_path)
    assert record.extra == {"extra": {"a": 1}, "zz": 2}
    assert record.to_dict()["extra"] == {"a": 1} and record.to_dict()["zz"] == 2


def test_the_file_is_readable_json_two_spaces_non_ascii_kept_paths_as_text(tmp_path):
    record = RunRecord(run_name="r", label="Mini-Monkey é", model_path=Path("/ckpt/é"))   # a Path is no JSON type
    path = write_run_record(tmp_path, record)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and '\n  "run_name": "r",\n' in text      # two-space indent, one key a line
    assert '"label": "Mini-Monkey é"' in text and "\\u00e9" not in text   # non-ASCII as itself
    assert '"model_path": "/ckpt/é"' in text
    assert read_run_record(tmp_path).label == "Mini-Monkey é"


@pytest.mark.parametrize("obj, field, kind", [
    ({"tiles": {"MME": [1]}}, "'tiles.MME' is list", "expected dict"),
    ({"timings": {"datasets": [1]}}, "'timings.datasets' is list", "expected dict"),
    ({"results": []}, "'results' is list", "expected dict"),
])
def test_a_field_of_the_wrong_type_is_named_with_its_type(tmp_path, obj, field, kind):
    RunLayout(tmp_path).run_json.write_text(json.dumps(obj))
    with pytest.raises(RunRecordError) as exc:
        read_run_record(tmp_path)
    assert field in str(exc.value) and kind in str(exc.value) and str(RunLayout(tmp_path).run_json) in str(exc.value)
