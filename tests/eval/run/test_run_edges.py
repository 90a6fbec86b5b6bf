"""Trust at the edges, second round: run folders never follow symlinks, and sizes nobody checked.

Each test asserts the one promised behaviour -- exit 2 and one ``error:`` line naming the file, a failed sample with
its reason, or one warning naming a folder -- and that nothing outside the run folder changed and nothing already
computed was lost.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers.runner_utils import FAST_TILES, merged_predictions, part_lines
from helpers.runner_utils import cli_call as _cli
from helpers.runner_utils import one_error_line as _one_line

from minimonkey_eval.datasets.fixtures import sample_rows, write_sample_tsvs
from minimonkey_eval.eval.launch import run
from minimonkey_eval.eval.report.collect import collect_report
from minimonkey_eval.eval.run.options import RunOptions
from minimonkey_eval.eval.run.writers import MAX_OTHER_COLUMNS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
VQA = "OCRBench"
SECRET = b"precious bytes outside the run folder\n"


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("MINIMONKEY_NO_PROGRESS", "1")


def _run_argv(ckpt, root, work, name="r", command="run", limit=2):
    return [command, "--model", "MiniMonkey", "--model-path", ckpt, "--data", VQA, "--data-root", root,
            "--work-dir", work, "--run-name", name, "--tiles", FAST_TILES, "--max-new-tokens", 2, "--limit", limit,
            "--device", "cpu", "--dtype", "fp32"]


def _opts(work, ckpt, root, name="r", **kw) -> RunOptions:
    base = dict(model="MiniMonkey", datasets=[VQA], model_path=str(ckpt), data_root=str(root), work_dir=str(work),
                run_name=name, tiles=FAST_TILES, max_new_tokens=2, batch_size=2)
    return RunOptions(**{**base, **kw})


@pytest.fixture
def finished(tmp_path, tiny_checkpoint, engine):
    """(data root, work dir, run folder) of a finished two-row run, and a file outside holding SECRET."""
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=2)
    result = run(_opts(tmp_path / "w", tiny_checkpoint, root), engine=engine)
    (tmp_path / "outside.txt").write_bytes(SECRET)
    return root, tmp_path / "w", result.run_dir


# ------------------------------------------------------------------------------------------------ symlinks
def test_a_lock_that_links_to_a_file_elsewhere_is_refused_and_the_file_untouched(tmp_path, tiny_checkpoint, capsys):
    root = tmp_path / "d"
    write_sample_tsvs(root, datasets=[VQA], n=2)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(SECRET)
    (tmp_path / "w" / "r").mkdir(parents=True)
    os.symlink(outside, tmp_path / "w" / "r" / ".lock")
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "w"), capsys), ".lock", "is a symlink")
    assert outside.read_bytes() == SECRET
    assert sorted(p.name for p in (tmp_path / "w" / "r").iterdir()) == [".lock"]   # nothing written in the folder


def test_a_part_file_that_links_elsewhere_is_refused_and_nothing_is_lost(finished, tiny_checkpoint, capsys):
    root, work, run_dir = finished
    outside = work.parent / "outside.txt"
    before, parts = merged_predictions(run_dir, VQA), part_lines(run_dir, VQA)
    link = run_dir / "predictions" / f"{VQA}.part1.jsonl"
    os.symlink(outside, link)
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, work), capsys), f"{VQA}.part1.jsonl", "is a symlink")
    assert outside.read_bytes() == SECRET
    link.unlink()
    assert merged_predictions(run_dir, VQA) == before and part_lines(run_dir, VQA) == parts


@pytest.mark.parametrize("where", ["part file", "predictions folder", "run folder"])
def test_a_symlink_loop_is_one_line_not_a_traceback(finished, tiny_checkpoint, capsys, where):
    root, work, run_dir = finished
    before = merged_predictions(run_dir, VQA)
    if where == "part file":
        link = run_dir / "predictions" / f"{VQA}.part3.jsonl"
        os.symlink(link.name, link)
        name = "r"
    elif where == "predictions folder":
        moved = run_dir / "kept"
        (run_dir / "predictions").rename(moved)
        link = run_dir / "predictions"
        os.symlink("predictions", link)
        name = "r"
    else:
        link = work / "loop"
        os.symlink("loop", link)
        name = "loop"
    err = _one_line(*_cli(_run_argv(tiny_checkpoint, root, work, name=name), capsys), str(link), "is a symlink")
    assert "is a file" not in err
    if where == "predictions folder":
        link.unlink()
        moved.rename(run_dir / "predictions")
    assert merged_predictions(run_dir, VQA) == before


def test_a_run_folder_that_links_to_another_run_is_refused(finished, tiny_checkpoint, capsys):
    root, work, run_dir = finished
    os.symlink(run_dir.name, work / "alias")
    listing = sorted(p.name for p in run_dir.rglob("*"))
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, work, name="alias"), capsys), "alias", "is a symlink")
    assert sorted(p.name for p in run_dir.rglob("*")) == listing


def test_an_alias_and_a_copy_of_a_run_are_named_once_by_report_and_run_all(finished, tiny_checkpoint, capsys,
                                                                          caplog):
    """A symlink to a run folder and a ``cp -r`` backup (the same run_name in run.json): the report lists the run
    once and says so in one warning per folder; ``run-all``, which builds the report, exits 0 (it died after
    inference before)."""
    root, work, run_dir = finished
    os.symlink(run_dir.name, work / "alias")
    shutil.copytree(run_dir, work / "r_backup")
    before = merged_predictions(run_dir, VQA)
    assert [r.run_name for r in collect_report(work).runs] == ["r"]
    for argv in (["report", "--work-dir", work], _run_argv(tiny_checkpoint, root, work, name="r2", command="run-all")):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rc, err = _cli(argv, capsys)
        assert rc == 0 and "Traceback" not in err, err
        warned = [r.getMessage() for r in caplog.records if r.name.endswith("report.collect")]
        assert len([w for w in warned if str(work / "alias") in w and "symlink" in w]) == 1, warned
        assert len([w for w in warned if str(work / "r_backup") in w and "'r'" in w]) == 1, warned
        assert (work / "report" / "report.md").is_file()
    assert sorted(r.run_name for r in collect_report(work).runs) == ["r", "r2"]
    assert merged_predictions(run_dir, VQA) == before and (work / "alias").is_symlink()


# ------------------------------------------------------------------------------------------------ sizes
def _tsv(root: Path, df: pd.DataFrame) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{VQA}.tsv"
    df.to_csv(path, sep="\t", index=False)
    return path


def test_a_prompt_longer_than_the_positions_is_a_failed_sample(tmp_path, tiny_checkpoint, engine):
    """A 200 KB question (~150k tokens against max_position_embeddings 32,768) fails before the forward, with the
    limit in its reason; the other rows are answered."""
    df = sample_rows(VQA, n=3).reset_index(drop=True)
    df["question"] = df["question"].astype(object)
    df.loc[1, "question"] = " ".join(f"w{i % 9973}x" for i in range(33_000))[:200_000]
    _tsv(tmp_path / "d", df)
    t0 = time.monotonic()
    result = run(_opts(tmp_path / "w", tiny_checkpoint, tmp_path / "d", batch_size=3), engine=engine)
    assert time.monotonic() - t0 < 120          # never prefilled: ~150k tokens take minutes on CPU
    records = {r[0]: r for r in merged_predictions(result.run_dir, VQA)}
    samples = pd.read_csv(result.run_dir / f"{VQA}_samples.csv", keep_default_na=False)
    long = samples[samples["index"] == int(df.loc[1, "index"])].iloc[0]
    assert bool(long["failed"]) and "max_position_embeddings 32768" in long["reason"], long["reason"]
    assert "prompt too long" in long["reason"]
    answered = [i for i in df["index"] if int(i) != int(df.loc[1, "index"])]
    assert all(not records[int(i)][2] for i in answered)
    assert result.outcomes[VQA].failed == 1


def test_twenty_thousand_columns_neither_hang_nor_kill_the_sheet(tmp_path, tiny_checkpoint, engine, caplog):
    """A 3-row TSV with 20,000 extra columns runs through `run`: the prediction sheet keeps the columns scoring reads
    and a bounded number of others; the rest are named in one warning; the run is scored."""
    df = sample_rows(VQA, n=3).reset_index(drop=True)
    extra = pd.DataFrame({f"extra_{i}": ["x"] * len(df) for i in range(20_000)})
    _tsv(tmp_path / "d", pd.concat([df, extra], axis=1))
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING):
        result = run(_opts(tmp_path / "w", tiny_checkpoint, tmp_path / "d"), engine=engine)
    elapsed = time.monotonic() - t0
    assert elapsed < 120, elapsed
    sheet = pd.read_excel(result.run_dir / f"MiniMonkey_{VQA}.xlsx")
    assert {"index", "question", "answer", "category", "prediction"} <= set(sheet.columns)
    assert len(sheet.columns) <= len(df.columns) + MAX_OTHER_COLUMNS + 1 and len(sheet) == 3
    notes = [r.getMessage() for r in caplog.records if "leaves out" in r.getMessage()]
    assert len(notes) == 1 and "extra_19999" in notes[0] and f"leaves out {20_000 - MAX_OTHER_COLUMNS}" in notes[0]
    assert result.outcomes[VQA].failed == 0 and result.outcomes[VQA].rows == 3
