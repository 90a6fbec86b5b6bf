"""The run's house rules: one run record (typed, one reader / writer, versioned), one layout of file names, one
backend seam, process-wide state restored after a run, --no-progress."""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pytest

from minimonkey_eval.eval.runfiles.layout import RUN_JSON, RunLayout
from minimonkey_eval.eval.runfiles.record import (
    IDENTITY_FIELDS,
    SCHEMA_VERSION,
    RunRecord,
    RunRecordError,
    read_run_record,
    write_run_record,
)

PACKAGE = Path(__file__).resolve().parents[3] / "minimonkey_eval"


# ------------------------------------------------------------------------------------------------ the record
def test_record_round_trip_keeps_unknown_keys_and_omits_unset_blocks(tmp_path):
    record = RunRecord(run_name="r", model="MiniMonkey", msac=True, datasets=["MME"], tiles={"MME": {"kind": "msac"}},
                       extra={"someone_elses": {"a": 1}})
    path = write_run_record(tmp_path, record)
    assert path == RunLayout(tmp_path).run_json and path.name == RUN_JSON
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION and raw["someone_elses"] == {"a": 1}
    assert not {"vlmeval", "prediction_prefix", "params_b", "demo_note"} & set(raw)   # unset optional blocks
    back = read_run_record(tmp_path)
    assert back == record and back.prefix == "MiniMonkey"
    assert set(IDENTITY_FIELDS) <= set(raw)


def test_record_without_version_is_version_1_and_a_newer_one_is_refused(tmp_path):
    (tmp_path / RUN_JSON).write_text(json.dumps({"model": "MiniMonkey", "run_name": "r"}))
    assert read_run_record(tmp_path).schema_version == 1
    (tmp_path / RUN_JSON).write_text(json.dumps({"model": "MiniMonkey", "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(RunRecordError, match="schema_version"):
        read_run_record(tmp_path)


@pytest.mark.parametrize("value,needle", [
    ([], "holds a JSON list"), ({"timings": None}, "'timings' is NoneType"), ({"tiles": "x"}, "'tiles' is str"),
    ({"tiles": {"MME": 3}}, "'tiles.MME'"), ({"datasets": [1]}, "'datasets' must list"),
    ({"timings": {"datasets": []}}, "'timings.datasets'"), ({"schema_version": "1"}, "'schema_version' is str"),
    ({"checkpoint_files": []}, "'checkpoint_files' is list"),
])
def test_wrong_shape_is_one_line_naming_file_and_field(tmp_path, value, needle):
    (tmp_path / RUN_JSON).write_text(json.dumps(value))
    with pytest.raises(RunRecordError) as exc:
        read_run_record(tmp_path)
    text = str(exc.value)
    assert needle in text and str(tmp_path / RUN_JSON) in text and len(text.splitlines()) == 1
    assert isinstance(exc.value, ValueError)   # readers that skip unreadable folders on ValueError keep doing so


def test_missing_and_unreadable_records(tmp_path):
    assert read_run_record(tmp_path, missing_ok=True) is None
    with pytest.raises(RunRecordError, match="not found"):
        read_run_record(tmp_path)
    (tmp_path / RUN_JSON).write_text("{not json")
    with pytest.raises(RunRecordError, match="unreadable"):
        read_run_record(tmp_path)


def test_differences_treat_fields_added_later_as_not_recorded():
    old = RunRecord(model="MiniMonkey", tiles={"MME": {"tiles": "1-2"}})
    mine = RunRecord(model="MiniMonkey", dtype="float32", attn="sdpa")
    assert old.differences(mine, {"MME": {"tiles": "1-2"}, "POPE": {"tiles": "9-9"}}) == []
    assert old.differences(mine, {"MME": {"tiles": "1-3"}}) == ["tiles[MME]={'tiles': '1-2'} (this run: "
                                                                 "{'tiles': '1-3'})"]
    old.dtype = "bfloat16"
    assert old.differences(mine, {}) == ["dtype='bfloat16' (this run: 'float32')"]


# ------------------------------------------------------------------------------------------------ house rules
def _sources(*parts: str):
    for path in sorted(PACKAGE.joinpath(*parts).rglob("*.py")):
        yield path, path.read_text(encoding="utf-8")


def _imports(text: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def test_the_runner_imports_no_backend():
    offenders = [f"{p.name}: {n}" for p, text in _sources("eval", "run") for n in _imports(text)
                 if n.startswith(("minimonkey_eval.eval.backends", "minimonkey_eval.eval.report",
                                  "minimonkey_eval.eval.stats", "minimonkey_eval.cli"))]
    assert offenders == []


def test_each_rule_lives_in_one_module():
    def where(pattern: str) -> set[str]:
        return {str(p.relative_to(PACKAGE)) for p, text in _sources() if re.search(pattern, text)}

    owned_elsewhere = {"models/registry.py", "models/identity.py"}

    def mine(paths: set[str]) -> set[str]:
        return {p for p in paths if not p.startswith(tuple(owned_elsewhere))}

    assert mine(where(r'"run\.json"')) == {"eval/runfiles/layout.py"}
    assert mine(where(re.escape("A-Za-z0-9._+=-"))) == {"naming.py"}
    assert mine(where(r"MAX_IMAGE_PIXELS\s*=[^=]|os\.environ\[[^]]+\]\s*=[^=]|os\.environ\.update")) == {
        "process_state.py"}
    assert mine(where(r"\b8 if\b")) == set()
    assert where(r"os\.environ\.get\(\"RANK\"|_env_int\(\"RANK\"") == {"eval/run/distributed.py"}


def test_no_module_over_600_lines():
    assert [p.name for p, text in _sources() if len(text.splitlines()) > 600] == []


# ------------------------------------------------------------------------------------------------ process state
def test_process_state_context_managers_restore_on_error(monkeypatch):
    from PIL import Image

    from minimonkey_eval.process_state import LMUDATA_ENV, hub_offline, lmudata_env, pillow_pixel_limit

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.delenv(LMUDATA_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(RuntimeError):
        with pillow_pixel_limit(0), lmudata_env("/data"), hub_offline(False), hub_offline(allow=False):
            assert Image.MAX_IMAGE_PIXELS is None and os.environ[LMUDATA_ENV] == "/data"
            assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
            raise RuntimeError("inside")
    assert Image.MAX_IMAGE_PIXELS == 1000 and LMUDATA_ENV not in os.environ
    assert os.environ["HF_HUB_OFFLINE"] == "0" and "TRANSFORMERS_OFFLINE" not in os.environ
    with pillow_pixel_limit(None):
        assert Image.MAX_IMAGE_PIXELS == 1000


def test_a_run_leaves_process_state_as_it_found_it(tmp_path, tiny_checkpoint, engine, monkeypatch):
    from helpers.runner_utils import FAST_TILES
    from PIL import Image

    from minimonkey_eval.datasets.fixtures import write_sample_tsvs
    from minimonkey_eval.datasets.local import import_vlmeval
    from minimonkey_eval.eval.launch import run
    from minimonkey_eval.eval.run.options import RunOptions

    import_vlmeval()   # importing vlmeval sets Pillow's limit to its 1e9 once per process (process_state docstring)
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=["OCRBench"], n=2)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12_345_678)
    monkeypatch.setenv("LMUData", str(tmp_path / "elsewhere"))
    env = dict(os.environ)
    result = run(RunOptions(model="MiniMonkey", datasets=["OCRBench"], model_path=str(tiny_checkpoint),
                            data_root=str(root), work_dir=str(tmp_path / "w"), tiles=FAST_TILES, max_new_tokens=2,
                            batch_size=1, max_image_pixels=0, progress=False), engine=engine)
    assert result.outcomes["OCRBench"].rows == 2
    assert Image.MAX_IMAGE_PIXELS == 12_345_678 and dict(os.environ) == env


# ------------------------------------------------------------------------------------------------ --no-progress
def test_no_progress_option_and_its_environment_fallback(monkeypatch):
    from minimonkey_eval import cli
    from minimonkey_eval.eval.run.options import NO_PROGRESS_ENV, options_from_args, show_progress

    parser = cli.build_parser()
    base = ["--model", "MiniMonkey", "--data", "MME"]
    for command in ("run", "run-all"):
        on = options_from_args(parser.parse_args([command, *base]), ["MME"])
        off = options_from_args(parser.parse_args([command, *base, "--no-progress"]), ["MME"])
        assert on.progress is None and off.progress is False
    for argv in (["sweep", "--model", "MiniMonkey", "--data", "MME"], ["demo"], ["bench", "--real-shapes"]):
        assert parser.parse_args([*argv, "--no-progress"]).progress is False
    monkeypatch.delenv(NO_PROGRESS_ENV, raising=False)
    assert show_progress(on) and not show_progress(off)
    monkeypatch.setenv(NO_PROGRESS_ENV, "1")
    assert not show_progress(on)
    on.progress = True
    assert show_progress(on)
