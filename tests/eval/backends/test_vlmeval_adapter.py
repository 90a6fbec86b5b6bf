"""``run --model vlmeval:NAME``: a VLMEvalKit wrapper (tests/helpers/vlmeval_pixel.py, answers from pixels) end to end
through our runner (three datasets, failed sample, resume, batch interface) and into the report; one-line errors."""
from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from minimonkey_eval import cli
from minimonkey_eval.datasets.registry import get_benchmark
from minimonkey_eval.eval.report import published as pub

DATASETS = ("MME", "OCRBench", "AI2D_TEST")
KIND = {"MME": "Y/N", "OCRBench": "VQA", "AI2D_TEST": "MCQ"}
THRESHOLD = 120


@pytest.fixture(scope="module")
def registered():
    """PixelVLM / PixelBatchVLM in vlmeval.config.supported_VLM under test names (removed afterwards)."""
    from minimonkey_eval.datasets.local import import_vlmeval

    import_vlmeval()
    from helpers import vlmeval_pixel as vp
    from vlmeval.config import supported_VLM

    names = {vp.TEST_NAME: partial(vp.PixelVLM, model_path="example-org/pixel-model"),
             vp.TEST_NAME + "-batch": partial(vp.PixelBatchVLM, model_path="example-org/pixel-model")}
    supported_VLM.update(names)
    yield vp
    for k in names:
        supported_VLM.pop(k, None)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, registered):
    from minimonkey_eval.datasets.fixtures import write_sample_tsvs

    root = tmp_path_factory.mktemp("vlmeval_run")
    write_sample_tsvs(root / "LMUData", datasets=list(DATASETS), n=2)
    model = root / "model"
    model.mkdir()
    (model / "pixel.json").write_text(json.dumps({"threshold": THRESHOLD}))
    first_mme = pd.read_csv(root / "LMUData" / "MME.tsv", sep="\t")["question"].iloc[0]
    (model / "fail.txt").write_text(first_mme.splitlines()[0] + "\n")
    return root, model, registered


def _argv(root: Path, model: Path, name: str, data=",".join(DATASETS), *extra):
    return ["run", "--model", f"vlmeval:{name}", "--model-path", str(model), "--data", data, "--data-root",
            str(root / "LMUData"), "--work-dir", str(root / "work"), *extra]


@pytest.fixture(scope="module")
def first_run(setup):
    root, model, vp = setup
    vp.PixelVLM.calls.clear()
    rc = cli.main(_argv(root, model, vp.TEST_NAME, ",".join(DATASETS), "--batch-size", "4"))
    calls = list(vp.PixelVLM.calls)
    run_dir = root / "work" / f"vlmeval-{vp.TEST_NAME}"
    samples = {d: pd.read_csv(run_dir / f"{d}_samples.csv", dtype=str, keep_default_na=False) for d in DATASETS}
    return rc, run_dir, calls, samples, json.loads((run_dir / "run.json").read_text())


def test_run_records_the_wrapper_and_answers_from_pixels(first_run, setup):
    rc, run_dir, calls, samples, meta = first_run
    root, model, vp = setup
    assert rc == 0
    assert meta["model"] == f"vlmeval:{vp.TEST_NAME}"
    assert meta["vlmeval"]["class"] == "helpers.vlmeval_pixel.PixelVLM" and meta["vlmeval"]["batch_interface"] is False
    assert "VLMEvalKit" in meta["vlmeval"]["ran_through"]
    for d in DATASETS:                                  # VLMEvalKit's prediction file, named by prediction_prefix
        assert (run_dir / f"{meta['prediction_prefix']}_{d}.xlsx").is_file()
    assert meta["batch_size"] == 1                      # no batch interface: --batch-size 4 -> 1
    assert {d for d, _ in calls} == set(DATASETS)
    for d in DATASETS:
        s = samples[d]
        ok = s[s["failed"] != "True"]
        assert len(ok) >= 2
        for pred, image in zip(ok["prediction"], ok["image_path"]):
            assert pred == vp.expected_answer(KIND[d], image.split(";")[0], THRESHOLD)
    failed = samples["MME"][samples["MME"]["failed"] == "True"]
    assert len(failed) == 1 and "asked to fail" in failed["reason"].iloc[0]
    summary = pd.read_csv(run_dir / "summary.csv")
    for d in DATASETS:
        assert not math.isnan(summary[get_benchmark(d).column].iloc[0])
        assert (run_dir / f"{d}_score.csv").is_file()


def test_resume_only_retries_the_failed_sample(first_run, setup):
    _, run_dir, _, _, _ = first_run
    root, model, vp = setup
    (model / "fail.txt").unlink()
    vp.PixelVLM.calls.clear()
    assert cli.main(_argv(root, model, vp.TEST_NAME)) == 0
    assert vp.PixelVLM.calls == [("MME", 1)]            # everything else was already answered
    s = pd.read_csv(run_dir / "MME_samples.csv", dtype=str, keep_default_na=False)
    assert (s["failed"] != "True").all()


def test_batch_interface_gets_batches(setup, tmp_path):
    root, model, vp = setup
    clean = tmp_path / "model"                          # the same model without the failing question (whatever
    clean.mkdir()                                       # order the module's tests run in): batches as planned
    (clean / "pixel.json").write_text((model / "pixel.json").read_text())
    vp.PixelBatchVLM.batches.clear()
    assert cli.main(_argv(root, clean, vp.TEST_NAME + "-batch", "MME", "--batch-size", "3",
                          "--run-name", "pixel-batch")) == 0
    meta = json.loads((root / "work" / "pixel-batch" / "run.json").read_text())
    assert meta["vlmeval"]["batch_interface"] is True and meta["batch_size"] == 3
    assert vp.PixelBatchVLM.batches == [3, 1]           # 4 MME rows
    assert meta["params_b"] == 110 / 1e9 and "counted" in meta["params_source"]


def test_report_lists_the_run_with_ranks(first_run, setup, capsys):
    root, model, vp = setup
    out = root / "report"
    assert cli.main(["report", "--work-dir", str(root / "work"), "--out", str(out), "--published", "all"]) == 0
    md = (out / "report.md").read_text()
    label = f"{vp.TEST_NAME} (VLMEvalKit wrapper) [vlmeval-{vp.TEST_NAME}]"
    table = md.split("## Where the runs sit")[1]
    for key, lab in zip(pub.all_published()["key"], pub.all_published()["label"]):
        assert f"| {lab} | published (" in table, key
    ranks = table.split("### Rank")[1].split("### Parameters vs score")[0]
    rank_lines = [ln for ln in ranks.splitlines() if ln.startswith(f"| {label}")]
    assert len(rank_lines) == 1
    cells = [c.strip() for c in rank_lines[0].strip("|").split("|")]
    summary = pd.read_csv(first_run[1] / "summary.csv")
    cards = pub.all_published()
    cols = list(cards.columns[len(pub.LANDSCAPE_COLUMNS):])
    for d in DATASETS:
        col = get_benchmark(d).column
        value = float(summary[col].iloc[0])
        # distinct published models with a number (a model on both cards once), by hand
        vals = {}
        for key, same, v in zip(cards["key"], cards["same_as"], cards[col]):
            if not math.isnan(v):
                vals.setdefault(same or key, v)
        assert cells[1 + cols.index(col)] == f"{1 + sum(v > value for v in vals.values())}/{len(vals) + 1}"
    assert (out / "landscape_MME.png").is_file()
    assert f"| {vp.TEST_NAME} (VLMEvalKit wrapper) | measured: vlmeval-{vp.TEST_NAME} |" in md  # paper table row


def test_unknown_model_and_remote_code_are_one_line(setup, tmp_path, capsys):
    root, model, vp = setup
    assert cli.main(_argv(root, model, "NoSuchModel-xyz", "MME")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: vlmeval:NoSuchModel-xyz") and "supported_VLM" in err[0]
    # A wrapper that needs what is not there: PixelVLM on a folder without pixel.json.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(_argv(root, empty, vp.TEST_NAME, "MME", "--run-name", "broken")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pixel.json" in err[0]
    assert "helpers.vlmeval_pixel.PixelVLM could not be built from" in err[0]
    # A checkpoint whose config.json names modeling code the folder lacks: remote code, said so.
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "modeling_x.XModel"}}))
    (remote / "pixel.json").write_text("{not json")
    assert cli.main(_argv(root, remote, vp.TEST_NAME, "MME", "--run-name", "remote")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "remote code" in err[0] and "modeling_x.py missing" in err[0]
    # Engine-only options are refused, not ignored.
    assert cli.main(_argv(root, model, vp.TEST_NAME, "MME", "--scm")) == 2
    assert "--scm sets our engine" in capsys.readouterr().err


def test_building_the_wrapper_is_offline_and_the_switches_are_put_back(setup, tmp_path, monkeypatch):
    """The wrapper is built with Hugging Face downloads off (environment and hub constant); after the run both are
    as they were (an unset variable unset again)."""
    import os

    import huggingface_hub.constants as hub
    from vlmeval.config import supported_VLM

    root, model, vp = setup
    clean = tmp_path / "model"
    clean.mkdir()
    (clean / "pixel.json").write_text((model / "pixel.json").read_text())
    seen = {}

    def build(**kwargs):
        seen.update({k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")},
                    constant=hub.HF_HUB_OFFLINE)
        return vp.PixelVLM(**kwargs)

    monkeypatch.setitem(supported_VLM, vp.TEST_NAME + "-state", build)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    assert cli.main(_argv(root, clean, vp.TEST_NAME + "-state", "MME", "--run-name", "state")) == 0
    assert seen == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "constant": True}
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    assert hub.HF_HUB_OFFLINE is False
