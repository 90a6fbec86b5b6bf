"""Hostile and unlucky input: no traceback, no silently wrong score, no code from a data file.

One section per class of docs/faults.md; each test asserts the exact outcome (exit code 2 and one
``error:`` line, a failed-sample record with its reason, or the right number) and, where a run came before, that
nothing it inferred was lost. The last section feeds random bytes / JSON / TSV cells through the data loader and the
run-folder reader (hypothesis): only ``UserFacingError`` may come out.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers.runner_utils import FAST_TILES, CountingEngine, cli_env, merged_predictions, part_lines
from helpers.runner_utils import cli_call as _cli
from helpers.runner_utils import one_error_line as _one_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from minimonkey_eval import cli
from minimonkey_eval.datasets.fixtures import encode_image, sample_rows, write_sample_tsvs
from minimonkey_eval.datasets.local import DataError, load_dataset
from minimonkey_eval.datasets.registry import get_benchmark
from minimonkey_eval.datasets.validate import CellError, check_image_file, validate_tsv
from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.launch import run
from minimonkey_eval.eval.run.guards import failure_reason
from minimonkey_eval.eval.run.options import RunOptions
from minimonkey_eval.eval.run.store import RunLock
from minimonkey_eval.models.checkpoint import CheckpointError, read_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
VQA = "OCRBench"
MCQ = "AI2D_TEST"
PWNED = "minimonkey_pwned"


# ------------------------------------------------------------------------------------------------ helpers
def _argparse_error(argv, capsys, needle):
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and needle in errors[0] and not any("Traceback" in x for x in err), err


def _run_argv(ckpt, root, work, *extra, data=VQA, name="r", limit=1):
    return ["run", "--model", "MiniMonkey", "--model-path", ckpt, "--data", data, "--data-root", root,
            "--work-dir", work, "--run-name", name, "--tiles", FAST_TILES, "--max-new-tokens", 2, "--limit", limit,
            "--device", "cpu", *extra]


def _opts(tmp_path, ckpt, root, **kw) -> RunOptions:
    base = dict(model="MiniMonkey", datasets=[VQA], model_path=str(ckpt), data_root=str(root),
                work_dir=str(tmp_path / "results"), tiles=FAST_TILES, max_new_tokens=2, batch_size=2, run_name="r")
    base.update(kw)
    return RunOptions(**base)


def _tsv(root: Path, name: str, df: pd.DataFrame) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.tsv"
    df.to_csv(path, sep="\t", index=False)
    return path


def _with(name: str, n: int, **cells) -> pd.DataFrame:
    """``n`` fixture rows of ``name`` with some cells replaced: ``column=(row, value)``."""
    df = sample_rows(name, n=n).copy().reset_index(drop=True)
    for col, (row, value) in cells.items():
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
    return df


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIMONKEY_NO_PROGRESS", "1")
    monkeypatch.chdir(tmp_path)   # a payload that ran would leave PWNED here


def _not_pwned(tmp_path):
    assert not (tmp_path / PWNED).exists() and not Path(PWNED).exists()


# ================================================================ 1. code in data
CODE = f"__import__('os').system('touch {PWNED}')"


def test_index_with_code_is_refused_and_never_runs(tmp_path, tiny_checkpoint, capsys):
    root = tmp_path / "d"
    _tsv(root, VQA, _with(VQA, 2, index=(1, CODE)))
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "w", limit=2), capsys),
              f"{VQA}.tsv", "row 2", "column 'index'", "not a plain integer")
    _not_pwned(tmp_path)


def test_index_with_path_cannot_write_outside(tmp_path, tiny_checkpoint, capsys):
    root = tmp_path / "d"
    _tsv(root, VQA, _with(VQA, 2, index=(0, "../../escape")))
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "w"), capsys), "row 1", "column 'index'")
    assert not list(tmp_path.rglob("escape*"))


@pytest.mark.parametrize("column,value,needle", [
    ("image", f"[{CODE}]", "column 'image'"),                       # toliststr evaluates '[...]' image cells
    ("answer", CODE, "column 'answer'"),                            # OCRBench's eval(answer)
    ("answer", "[().__class__.__base__.__subclasses__()]", "column 'answer'"),
    ("index", "1_000", "column 'index'"),                           # eval('1_000') == 1000 would merge rows
    ("index", "True", "column 'index'"),                            # eval('True') is an int
    ("index", "9" * 17, "column 'index'"),
])
def test_cells_vlmeval_evaluates_are_literals_only(tmp_path, column, value, needle):
    path = _tsv(tmp_path / "d", VQA, _with(VQA, 2, **{column: (1, value)}))
    with pytest.raises(CellError) as exc:
        validate_tsv(path, get_benchmark(VQA))
    assert "row 2" in str(exc.value) and needle in str(exc.value)
    with pytest.raises(DataError):
        load_dataset(VQA, data_root=tmp_path / "d")
    _not_pwned(tmp_path)


def test_vqa_answers_and_mathvista_lists_checked(tmp_path):
    path = _tsv(tmp_path / "d", "TextVQA_VAL", _with("TextVQA_VAL", 2, answer=(0, f"{CODE}")))
    with pytest.raises(CellError, match="column 'answer'.*Python code"):
        validate_tsv(path, get_benchmark("TextVQA_VAL"))
    # plain text and list answers (what real TSVs hold) pass, 'yes'/'3-4' evaluate harmlessly
    ok = _with("TextVQA_VAL", 3, answer=(0, "yes"))
    ok.loc[1, "answer"], ok.loc[2, "answer"] = "3-4", "['a', 'b c']"
    validate_tsv(_tsv(tmp_path / "ok", "TextVQA_VAL", ok), get_benchmark("TextVQA_VAL"))
    mv = sample_rows("MathVista_MINI", n=8).reset_index(drop=True)
    row = int(mv.index[mv["question_type"] == "multi_choice"][0])
    mv["choices"] = mv["choices"].astype(object)
    mv.loc[row, "choices"] = "open('/etc/passwd').read()"
    with pytest.raises(CellError, match="column 'choices'"):
        validate_tsv(_tsv(tmp_path / "mv", "MathVista_MINI", mv), get_benchmark("MathVista_MINI"))
    _not_pwned(tmp_path)


def test_multi_image_paths_stay_inside_the_image_folder(tmp_path):
    good = encode_image(Image.new("RGB", (8, 8)))
    df = _with(VQA, 2, image=(0, repr([good, good])))
    df["image_path"] = ["", ""]
    df.loc[0, "image_path"] = repr(["a.jpg", "../../../outside.jpg"])
    with pytest.raises(CellError, match="row 1 .*column 'image_path'.*without '..'"):
        validate_tsv(_tsv(tmp_path / "d", VQA, df), get_benchmark(VQA))
    df.loc[0, "image_path"] = repr(["a.jpg", "b.jpg"])                 # single image, absolute target: refused too
    df.loc[1, "image_path"] = "/tmp/elsewhere.png"
    with pytest.raises(CellError, match="row 2 .*column 'image_path'.*not absolute"):
        validate_tsv(_tsv(tmp_path / "d", VQA, df), get_benchmark(VQA))


# ================================================================ 2. errors while scoring or loading
def test_odd_limit_keeps_whole_mme_pairs(tmp_path, tiny_checkpoint, engine):
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=["MME"], n=4)
    result = run(_opts(tmp_path, tiny_checkpoint, root, datasets=["MME"], limit=3), engine=engine)
    o = result.outcomes["MME"]
    assert o.rows == 4 and o.inferred == 4 and o.failed == 0            # rounded up to the second whole pair
    paths = pd.read_csv(result.run_dir / "MME_samples.csv")["image_path"]
    assert len(paths) == 4 and paths.value_counts().eq(2).all()
    assert o.headline == o.headline                                      # scored (not NaN)


@pytest.mark.parametrize("cells,needle", [
    ({"answer": (0, "plain words")}, "OCRBench answer must be a"),
    ({"category": (0, "Made Up Category")}, "OCRBench category"),
    ({"index": (0, str(2 ** 53 + 1))}, "above 2**53"),
])
def test_data_the_scorer_would_choke_on_is_one_line(tmp_path, tiny_checkpoint, capsys, cells, needle):
    root = tmp_path / "d"
    _tsv(root, VQA, _with(VQA, 2, **cells))
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "w", limit=2), capsys), needle, "row 1")


@pytest.mark.parametrize("option,value,needle", [
    ("--dtype", "foo", "not a supported dtype"), ("--dtype", "int8", "not a supported dtype"),
    ("--dtype", "float64", "not a supported dtype"), ("--device", "foo", "not a device"),
    ("--device", "cuda:x", "not a device"), ("--attn", "magic", "invalid choice"),
])
def test_engine_options_checked_once_for_every_subcommand(tmp_path, capsys, option, value, needle):
    for argv in (["run", "--model", "MiniMonkey", "--data", VQA],
                 ["chat", "--model-path", tmp_path, "--question", "q"],
                 ["bench", "--model-path", tmp_path],
                 ["demo"]):
        if option == "--attn" and argv[0] == "demo":
            continue
        _argparse_error([*argv, option, value], capsys, needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_one_line(tmp_path, tiny_checkpoint, capsys):
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=1)
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "w")[:-2] + ["--device", "cuda"], capsys),
              "no CUDA device")


def test_scorer_failure_keeps_predictions_and_rerun_scores(tmp_path, tiny_checkpoint, engine, monkeypatch):
    from minimonkey_eval.eval import scoring

    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=2)
    real = scoring.score_dataset
    monkeypatch.setattr(scoring, "score_dataset", lambda *a, **k: {}["vlmeval blew up"])
    counting = CountingEngine(engine)
    with pytest.raises(UserFacingError, match=f"{VQA}: VLMEvalKit's scoring failed .*KeyError.*predictions are kept"):
        run(_opts(tmp_path, tiny_checkpoint, root), engine=counting)
    assert counting.samples == 2 and len(part_lines(tmp_path / "results" / "r", VQA)) == 2
    RunLock(tmp_path / "results" / "r").acquire().release()              # the lock was released
    monkeypatch.setattr(scoring, "score_dataset", real)
    result = run(_opts(tmp_path, tiny_checkpoint, root), engine=counting)
    assert counting.samples == 2 and result.outcomes[VQA].inferred == 0   # nothing inferred again
    assert result.outcomes[VQA].headline == result.outcomes[VQA].headline


# ================================================================ 3. valid JSON, wrong shape
@pytest.mark.parametrize("mutate,needle", [
    (lambda c: [], "holds a JSON list"),
    (lambda c: (c["llm_config"].pop("vocab_size"), c)[1], "llm_config.vocab_size is missing"),
    (lambda c: (c["vision_config"].__setitem__("hidden_size", "1024"), c)[1], "vision_config.hidden_size is str"),
    (lambda c: (c.pop("ps_version"), c)[1], "no ps_version"),
    (lambda c: (c["llm_config"].__setitem__("num_key_value_heads", 3), c)[1], "num_key_value_heads"),
    (lambda c: (c.__setitem__("downsample_ratio", None), c)[1] if False else
     (c.__setitem__("downsample_ratio", "half"), c)[1], "downsample_ratio is str"),
])
def test_config_json_of_the_wrong_shape(tmp_path, tiny_checkpoint, mutate, needle):
    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "ck")
    cfg = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(mutate(cfg)))
    with pytest.raises(CheckpointError) as exc:
        read_config(ckpt)
    assert needle in str(exc.value) and "config.json" in str(exc.value)


def test_phi3_rope_strictness(tmp_path):
    from minimonkey_eval.models.checkpoint import load_pretrained
    from minimonkey_eval.models.tiny_checkpoint import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "phi3", family="4b")
    cfg = json.loads((ckpt / "config.json").read_text())
    rs = cfg["llm_config"]["rope_scaling"]
    assert max(rs["long_factor"]) > 60 and 1.0 < min(rs["short_factor"]) < 1.1   # real magnitudes
    broken = json.loads(json.dumps(cfg))
    del broken["llm_config"]["original_max_position_embeddings"]
    (ckpt / "config.json").write_text(json.dumps(broken))
    with pytest.raises(CheckpointError, match="needs llm_config.original_max_position_embeddings"):
        read_config(ckpt)
    broken = json.loads(json.dumps(cfg))
    broken["llm_config"]["rope_scaling"]["long_factor"] = rs["long_factor"][:-1]
    (ckpt / "config.json").write_text(json.dumps(broken))
    with pytest.raises(CheckpointError, match="long_factor"):
        load_pretrained(ckpt, dtype=torch.float32)


def test_transformers_config_errors_are_checkpoint_errors(tmp_path, tiny_checkpoint, monkeypatch):
    from minimonkey_eval.models import checkpoint

    def reject(*a, **k):
        raise ValueError("`rope_parameters`'s long_factor field must have length 8, got 7")

    import dataclasses

    arch = "InternLM2ForCausalLM"
    monkeypatch.setitem(checkpoint.ADAPTERS, arch, dataclasses.replace(checkpoint.ADAPTERS[arch], text_config=reject))
    cfg = read_config(tiny_checkpoint)
    with pytest.raises(CheckpointError, match="transformers rejects the InternLM2ForCausalLM config: .*length 8"):
        checkpoint.native_config(cfg, 5)


@pytest.mark.parametrize("field,value,needle", [
    (None, [], "holds a JSON list"), ("timings", None, "'timings' is NoneType"), ("tiles", "x", "'tiles' is str"),
    ("results", [1], "'results' is list"), ("tiles", {"OCRBench": 3}, "'tiles.OCRBench'"),
    ("datasets", [1], "'datasets' must list"),
])
def test_run_json_of_the_wrong_shape(tmp_path, tiny_checkpoint, engine, field, value, needle):
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=1)
    first = run(_opts(tmp_path, tiny_checkpoint, root), engine=engine)
    before = merged_predictions(first.run_dir, VQA)
    meta = json.loads((first.run_dir / "run.json").read_text())
    if field is None:
        meta = value
    else:
        meta[field] = value
    (first.run_dir / "run.json").write_text(json.dumps(meta))
    with pytest.raises(UserFacingError) as exc:
        run(_opts(tmp_path, tiny_checkpoint, root), engine=engine)
    assert needle in str(exc.value) and "run.json" in str(exc.value) and "--overwrite" in str(exc.value)
    RunLock(first.run_dir).acquire().release()                           # lock released through the Python API
    assert merged_predictions(first.run_dir, VQA) == before              # nothing lost


# ================================================================ 4. filesystem
def test_tsv_that_is_a_directory(tmp_path, tiny_checkpoint, capsys):
    (tmp_path / "d" / f"{VQA}.tsv").mkdir(parents=True)
    _one_line(*_cli(_run_argv(tiny_checkpoint, tmp_path / "d", tmp_path / "w"), capsys), "is a directory")


def test_predictions_path_that_is_a_file(tmp_path, tiny_checkpoint, capsys):
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=1)
    (tmp_path / "w" / "r").mkdir(parents=True)
    (tmp_path / "w" / "r" / "predictions").write_text("oops")
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "w"), capsys), "predictions", "is a file")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_disk_full_while_writing_xlsx(tmp_path, tiny_checkpoint, capsys, monkeypatch, code):
    """The sheets are rendered in memory and written atomically: a full disk while the xlsx's temporary file is
    flushed is one line, leaves no temporary file and keeps every prediction; a rerun then finishes."""
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=1)
    real_fsync = os.fsync

    def full(fd):
        if ".xlsx.tmp" in os.readlink(f"/proc/self/fd/{fd}"):   # the temporary file of an xlsx's atomic write
            raise OSError(code, os.strerror(code))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "w"), capsys), os.strerror(code),
              "finished predictions are kept")
    d = tmp_path / "w" / "r"
    assert not [p for p in d.rglob("*") if ".tmp" in p.name]
    assert not list(d.glob("*.xlsx"))                          # no half sheet under the final name either
    assert len(part_lines(d, VQA)) == 1
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert _cli(_run_argv(tiny_checkpoint, root, tmp_path / "w"), capsys)[0] == 0


def test_report_and_make_fixtures_paths(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    _one_line(*_cli(["make-fixtures", "--out", tmp_path / "afile"], capsys), "not a folder")
    (tmp_path / "work").mkdir()
    _one_line(*_cli(["report", "--work-dir", tmp_path / "work", "--out", tmp_path / "afile" / "sub"], capsys),
              "cannot write the report")


def test_fifo_image_path_is_a_failed_sample_not_a_hang(tmp_path, tiny_checkpoint, engine):
    root = tmp_path / "d"
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(good)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    df = sample_rows(VQA, n=4).drop(columns=["image"]).reset_index(drop=True)
    df["image_path"] = [str(good), str(fifo), str(tmp_path), str(tmp_path / "missing.png")]
    _tsv(root, VQA, df)
    result = run(_opts(tmp_path, tiny_checkpoint, root), engine=engine)
    s = pd.read_csv(result.run_dir / f"{VQA}_samples.csv", keep_default_na=False)
    assert s["failed"].tolist() == [False, True, True, True]
    assert "not a regular file" in s["reason"][1] and "is a directory" in s["reason"][2]
    assert "image file not found" in s["reason"][3]


def test_chat_image_that_is_not_an_image(tmp_path, tiny_checkpoint, capsys):
    for image, needle in ((tiny_checkpoint / "config.json", "not an image"), (tmp_path, "is a directory"),
                          (tmp_path / "none.png", "not found")):
        _one_line(*_cli(["chat", "--model-path", tiny_checkpoint, "--image", image, "--question", "q"], capsys),
                  needle)


# ================================================================ 5. silently wrong numbers
@pytest.mark.parametrize("how", ["header only", "no image cells"])
def test_no_samples_is_no_headline(tmp_path, tiny_checkpoint, engine, how):
    root = tmp_path / "d"
    df = sample_rows(VQA, n=2)
    df = df.iloc[:0] if how == "header only" else df.assign(image="")
    _tsv(root, VQA, df)
    result = run(_opts(tmp_path, tiny_checkpoint, root), engine=engine)
    o = result.outcomes[VQA]
    assert o.rows == 0 and o.headline != o.headline                     # NaN: no number at all
    summary = pd.read_csv(result.summary_csv)
    assert summary["OCRBench"].isna().all()
    meta = json.loads((result.run_dir / "run.json").read_text())
    assert meta["results"][VQA]["headline"] is None and "no samples" in meta["results"][VQA]["notes"]
    assert not (result.run_dir / f"{VQA}_score.csv").exists()


def test_changed_tsv_image_is_decoded_again(tmp_path):
    root = tmp_path / "d"
    df = sample_rows(VQA, n=2).reset_index(drop=True)
    df["image"] = df["image"].astype(object)
    df.loc[0, "image"] = encode_image(Image.new("RGB", (30, 20), (255, 0, 0)))
    _tsv(root, VQA, df)
    ds = load_dataset(VQA, data_root=root)
    first = ds.dump_image(ds.data.iloc[0])[0]
    assert Image.open(first).size == (30, 20)
    df.loc[0, "image"] = encode_image(Image.new("RGB", (50, 10), (0, 0, 255)))
    _tsv(root, VQA, df)
    ds = load_dataset(VQA, data_root=root)
    again = ds.dump_image(ds.data.iloc[0])[0]
    assert again == first and Image.open(again).size == (50, 10)       # the new picture, not the old file
    # an unchanged TSV keeps the decoded file (no needless work)
    mtime = os.stat(again).st_mtime_ns
    ds = load_dataset(VQA, data_root=root)
    ds.dump_image(ds.data.iloc[0])
    assert os.stat(again).st_mtime_ns == mtime


def test_judge_that_is_not_reachable_is_recorded(tmp_path, tiny_checkpoint, engine, monkeypatch):
    for key in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[MCQ], n=2)
    result = run(_opts(tmp_path, tiny_checkpoint, root, datasets=[MCQ], judge="gpt-4o-mini"), engine=engine)
    meta = json.loads((result.run_dir / "run.json").read_text())[ "results"][MCQ]
    assert meta["judge"] is None and meta["extraction"] == "exact_matching"
    assert "judge gpt-4o-mini unavailable" in meta["notes"]
    sheet = pd.read_csv(result.run_dir / f"{MCQ}_score.csv")
    assert set(sheet["extraction"]) == {"exact_matching"}


def test_foreign_prediction_lines_are_not_taken_as_done(tmp_path, tiny_checkpoint, engine):
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=3)
    first = run(_opts(tmp_path, tiny_checkpoint, root, limit=1), engine=engine)
    before = part_lines(first.run_dir, VQA)
    part = first.run_dir / "predictions" / f"{VQA}.part0.jsonl"
    with open(part, "a") as f:
        f.write(json.dumps({"index": 1, "prediction": "FOREIGN", "failed": False, "reason": "",
                            "dataset": "POPE", "row": "0"}) + "\n")
        f.write(json.dumps({"index": 2, "prediction": "HANDMADE", "failed": False, "reason": ""}) + "\n")
    counting = CountingEngine(engine)
    result = run(_opts(tmp_path, tiny_checkpoint, root), engine=counting)
    assert counting.samples == 2 and result.outcomes[VQA].inferred == 2
    preds = merged_predictions(result.run_dir, VQA)
    assert [p[0] for p in preds] == [0, 1, 2] and not {"FOREIGN", "HANDMADE"} & {p[1] for p in preds}
    assert preds[0][1] == before[0]["prediction"]                      # the real record was kept


def test_nan_weights_are_refused(tmp_path, tiny_checkpoint, capsys):
    from safetensors.torch import load_file, save_file

    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "nan")
    sd = load_file(str(ckpt / "model.safetensors"))
    key = sorted(sd)[3]
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    save_file(sd, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=1)
    _one_line(*_cli(_run_argv(ckpt, root, tmp_path / "w"), capsys), key, "NaN/inf")


def test_non_finite_logits_are_detected(engine):
    from minimonkey_eval.models.engine import FiniteLogitsWatch, NonFiniteLogitsError

    watch = FiniteLogitsWatch()
    watch(None, torch.zeros(2, 5))
    watch.check()
    watch(None, torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]))
    with pytest.raises(NonFiniteLogitsError, match=r"row\(s\) \[1\]"):
        watch.check()
    head = engine.model.lm_head.weight
    saved = head.data.clone()
    try:
        head.data[0, 0] = float("inf")
        with pytest.raises(NonFiniteLogitsError):
            engine.chat([Image.new("RGB", (32, 32))], "hi", max_new_tokens=2)
    finally:
        head.data.copy_(saved)


# ================================================================ 6. hangs
@pytest.mark.parametrize("extra,needle", [
    (["--tiles", "1-100000"], "128"), (["--tiles", "1-2/1-5000"], "128"),
    (["--stage-threads", "1000000"], "--stage-threads must be in 1..64"),
    (["--max-new-tokens", "1000000000"], "--max-new-tokens must be in 1..32768"),
    (["--batch-size", "100000000"], "--batch-size must be in"),
])
def test_extreme_option_values_are_refused_fast(tmp_path, tiny_checkpoint, capsys, extra, needle):
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=1)
    argv = _run_argv(tiny_checkpoint, root, tmp_path / "w")
    argv = [a for i, a in enumerate(argv) if not (a == "--tiles" or (i > 0 and argv[i - 1] == "--tiles"))]
    _one_line(*_cli(argv + extra, capsys), needle)


def test_chat_extreme_tiles_are_one_line(tmp_path, tiny_checkpoint, capsys):
    _one_line(*_cli(["chat", "--model-path", tiny_checkpoint, "--question", "q", "--tiles", "1-99999"], capsys),
              "<= 128")
    _one_line(*_cli(["chat", "--model-path", tiny_checkpoint, "--question", "q", "--tiles", "12-4/3-7"], capsys),
              "--tiles", "MIN <= MAX")
    _one_line(*_cli(["chat", "--model-path", tiny_checkpoint, "--question", "q", "--tiles", "4-12/7-3"], capsys),
              "--tiles", "MIN <= MAX")
    _one_line(*_cli(["chat", "--model-path", tiny_checkpoint, "--question", "q", "--baseline-tiling", "--tiles",
                     "4-12/3-7"], capsys), "--baseline-tiling")
    _one_line(*_cli(["chat", "--model-path", tiny_checkpoint, "--question", "q", "--scm", "--scm-ratio", "0"], capsys),
              "--scm-ratio", "(0, 1]")


def test_sigint_exits_while_a_helper_thread_works(tmp_path):
    """Ctrl-C with a stage thread stuck (a blocked read) still ends the process at once, exit 130."""
    code = ("import signal, time, sys\n"
            "from minimonkey_eval import cli\n"
            "from minimonkey_eval.cli import report\n"
            "from minimonkey_eval.models.pipeline import Pipeline\n"
            "def interrupt(*a): raise KeyboardInterrupt\n"
            "def stuck(args):\n"
            "    signal.signal(signal.SIGALRM, interrupt); signal.alarm(2)\n"
            "    for _ in Pipeline(None, batch_size=1, threads=1).run([0], lambda s: time.sleep(600)): pass\n"
            "report.run = stuck\n"
            "sys.exit(cli.main(['report', '--work-dir', '.']))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 130 and "interrupted" in proc.stderr and "Traceback" not in proc.stderr


# ================================================================ 7. reasons say what was wrong
def test_empty_assertion_reason_says_where():
    try:
        raise AssertionError()   # what vlmeval's bare asserts raise (pytest rewrites this file's own asserts)
    except AssertionError as exc:
        reason = failure_reason(exc)
    assert reason.startswith("check failed at test_hostile.py:") and "raise AssertionError()" in reason
    assert failure_reason(ValueError("bad pixel")) == "bad pixel"
    assert failure_reason(KeyError()) == "KeyError without a message"


def test_image_file_reasons(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    for path, needle in ((fifo, "not a regular file"), (tmp_path, "is a directory"), (empty, "empty image file"),
                         (tmp_path / "no.png", "image file not found")):
        with pytest.raises(CellError, match=needle):
            check_image_file(path)


# ================================================================ 8. identity, stale run.json
def test_resume_in_another_dtype_is_refused(tmp_path, tiny_checkpoint, engine, capsys):
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=1)
    run(_opts(tmp_path, tiny_checkpoint, root, work_dir=str(tmp_path / "w")), engine=engine)   # fp32
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "w", "--dtype", "bf16"), capsys),
              "dtype='float32' (this run: 'bfloat16')")
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "w", "--attn", "eager"), capsys),
              "attn='sdpa' (this run: 'eager')")


def test_run_json_of_a_run_that_never_started_does_not_block(tmp_path, tiny_checkpoint, engine):
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=1)
    d = tmp_path / "results" / "r"
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"model": "InternVL2-2B", "datasets": [], "results": {}}))
    result = run(_opts(tmp_path, tiny_checkpoint, root), engine=engine)
    assert result.outcomes[VQA].inferred == 1
    assert json.loads((d / "run.json").read_text())["model"] == "MiniMonkey"


# ================================================================ property tests
_PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _text,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                     max_leaves=12)


@_PROPS
@given(data=st.binary(max_size=400))
def test_random_bytes_through_the_data_loader(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("bytes")
    (root / f"{VQA}.tsv").write_bytes(data)
    try:
        load_dataset(VQA, data_root=root)
    except UserFacingError:
        pass
    assert not Path(PWNED).exists()


@_PROPS
@given(cells=st.lists(st.tuples(_text, _text, _text, _text), min_size=1, max_size=4))
def test_random_tsv_cells_through_the_data_loader(tmp_path_factory, cells):
    root = tmp_path_factory.mktemp("cells")
    good = encode_image(Image.new("RGB", (4, 4)))
    df = pd.DataFrame({"index": [c[0] for c in cells], "question": [c[1] for c in cells],
                       "answer": [c[2] for c in cells], "category": [c[3] for c in cells],
                       "image": [good] * len(cells)})
    df.to_csv(root / f"{VQA}.tsv", sep="\t", index=False)
    try:
        ds = load_dataset(VQA, data_root=root)
        assert len(ds.data) <= len(cells)
    except UserFacingError:
        pass
    assert not Path(PWNED).exists()


@_PROPS
@given(value=_json)
def test_random_json_through_run_json_and_config_json(tmp_path_factory, tiny_checkpoint, value):
    from minimonkey_eval.eval.launch import make_runner

    tmp = tmp_path_factory.mktemp("json")
    ckpt = tmp / "ck"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(value))
    with pytest.raises(UserFacingError):
        read_config(ckpt)
    opts = RunOptions(model="MiniMonkey", datasets=[VQA], model_path=str(tiny_checkpoint), work_dir=str(tmp),
                      run_name="r", tiles=FAST_TILES, device="cpu", dtype="fp32")
    runner = make_runner(opts)
    runner.fingerprint = "x"
    (tmp / "r").mkdir()
    (tmp / "r" / "run.json").write_text(json.dumps(value))
    try:
        runner.open_folder()
    except UserFacingError:
        pass
    finally:
        runner.folder.release()
    RunLock(tmp / "r").acquire().release()


REAL_CONFIGS = Path("/work/shared/design/real-configs")


@pytest.mark.skipif(not REAL_CONFIGS.is_dir(), reason="the rebuilt real configs are not on this machine")
def test_real_configs_pass_the_shape_check():
    """The strict checks accept the (rebuilt) configs of all four real models, and refuse them without ps_version."""
    from minimonkey_eval.models.config_check import ConfigShapeError, check_original_config

    files = sorted(REAL_CONFIGS.glob("*.json"))
    assert len(files) == 4
    for f in files:
        cfg = json.loads(f.read_text())
        check_original_config(cfg, f)
        del cfg["ps_version"]
        with pytest.raises(ConfigShapeError, match="no ps_version"):
            check_original_config(cfg, f)
