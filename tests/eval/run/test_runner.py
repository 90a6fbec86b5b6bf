"""The runner on the tiny model: run-folder layout, --limit, resume without double inference, refusals."""
from __future__ import annotations

import json
import math
from collections import Counter

import pandas as pd
import pytest
from helpers.runner_utils import FAST_TILES, CountingEngine, merged_predictions, part_lines

from minimonkey_eval.datasets.fixtures import write_sample_tsvs
from minimonkey_eval.datasets.registry import PAPER_COLUMNS
from minimonkey_eval.eval.backends import base as backend_base
from minimonkey_eval.eval.launch import run
from minimonkey_eval.eval.run import writers
from minimonkey_eval.eval.run.options import RunError, RunOptions, options_from_args
from minimonkey_eval.models import ScmConfig

DATASET = "AI2D_TEST"        # 6 MCQ rows
SECOND = "OCRBench"          # 10 VQA rows

RUN_JSON_FIELDS = ("run_name", "model", "label", "msac", "scm", "scm_ratio", "scm_fix_off_by_one", "tile_profile",
                   "tiles", "model_path", "checkpoint_sha256", "demo", "dtype", "device", "git_commit", "versions",
                   "argv", "datasets", "max_new_tokens", "timings")


@pytest.fixture(scope="module")
def lmudata(tmp_path_factory):
    root = tmp_path_factory.mktemp("LMUData")
    write_sample_tsvs(root, datasets=[DATASET, SECOND])
    return root


@pytest.fixture
def spy(monkeypatch):
    """Indices whose prompt the runner built (the backends' message_for), in order."""
    seen: list = []
    original = backend_base.message_for

    def message_for(model, dataset, line):
        seen.append(str(line["index"]))
        return original(model, dataset, line)

    monkeypatch.setattr(backend_base, "message_for", message_for)
    return seen


def _opts(tmp_path, ckpt, lmudata, **kw) -> RunOptions:
    base = dict(model="MiniMonkey", datasets=[DATASET], model_path=str(ckpt), data_root=str(lmudata),
                work_dir=str(tmp_path / "results"), tiles=FAST_TILES, max_new_tokens=4, batch_size=4)
    base.update(kw)
    return RunOptions(**base)


def test_one_dataset_end_to_end_layout(tmp_path, tiny_checkpoint, engine, lmudata):
    counting = CountingEngine(engine)
    result = run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="mk"), engine=counting)
    d = tmp_path / "results" / "mk"
    assert result.run_dir == d and counting.samples == 6

    meta = json.loads((d / "run.json").read_text())
    for key in RUN_JSON_FIELDS:
        assert key in meta, key
    assert meta["model"] == "MiniMonkey" and meta["msac"] is True and meta["demo"] is False
    assert meta["tiles"][DATASET] == {"kind": "msac", "tiles": FAST_TILES, "max_new_tokens": 4}
    assert meta["datasets"] == [DATASET] and meta["timings"]["finished"]
    assert set(meta["versions"]) >= {"python", "torch", "transformers", "vlmeval"}
    assert meta["dtype"] == "float32" and meta["device"] == "cpu" and len(meta["checkpoint_sha256"]) == 64

    # VLMEvalKit's prediction file: dataset rows (no image column) + prediction
    pred = pd.read_excel(d / f"MiniMonkey_{DATASET}.xlsx")
    assert len(pred) == 6 and "prediction" in pred and "image" not in pred
    assert list(pred["index"]) == sorted(pred["index"])

    score = pd.read_csv(d / f"{DATASET}_score.csv")
    assert list(score.columns[:3]) == ["dataset", "metric", "value"]
    headline = float(score.loc[score["metric"] == "headline", "value"].iloc[0])

    samples = pd.read_csv(d / f"{DATASET}_samples.csv", keep_default_na=False)
    assert list(samples.columns) == list(writers.SAMPLE_COLUMNS)
    assert len(samples) == 6 and set(samples["failed"].astype(str)) == {"False"}
    assert all(p.endswith(".png") or p.endswith(".jpg") for p in samples["image_path"])
    # the sheet's per-sample scores are vlmeval's hits: their mean is the headline
    assert math.isclose(pd.to_numeric(samples["score"]).mean() * 100, headline, abs_tol=1e-6)

    summary = pd.read_csv(d / "summary.csv")
    assert list(summary.columns) == ["run_name", "model", "label", "demo", *PAPER_COLUMNS]
    assert len(summary) == 1 and summary.loc[0, "AI2D"] == pytest.approx(headline)
    assert all(pd.isna(summary.loc[0, c]) for c in PAPER_COLUMNS if c != "AI2D")   # not run = empty, never 0
    assert (d / "summary.xlsx").exists() and (d / f"{DATASET}_score.xlsx").exists()
    assert merged_predictions(d, DATASET) == [(int(i), str(p) if not pd.isna(p) else "", False)
                                              for i, p in zip(pred["index"], pred["prediction"])]

    # the report reads the folder
    from minimonkey_eval.eval.report.build import load_run

    loaded = load_run(d)
    assert loaded.scores["AI2D"] == pytest.approx(headline) and math.isnan(loaded.scores["MME"])


def test_limit_then_full_resumes_without_double_inference(tmp_path, tiny_checkpoint, engine, lmudata, spy):
    counting = CountingEngine(engine)
    run(_opts(tmp_path, tiny_checkpoint, lmudata, limit=3), engine=counting)
    d = tmp_path / "results" / "MiniMonkey_tiles1-2_1-1"
    assert spy == ["0", "1", "2"] and counting.samples == 3
    assert len(pd.read_excel(d / f"MiniMonkey_{DATASET}.xlsx")) == 3
    assert json.loads((d / "run.json").read_text())["results"][DATASET]["rows"] == 3

    run(_opts(tmp_path, tiny_checkpoint, lmudata), engine=counting)
    assert Counter(spy) == Counter({str(i): 1 for i in range(6)})    # no index twice, none lost
    assert counting.samples == 6
    assert [r[0] for r in merged_predictions(d, DATASET)] == list(range(6))
    assert len(part_lines(d, DATASET)) == 6

    calls = counting.calls
    result = run(_opts(tmp_path, tiny_checkpoint, lmudata), engine=counting)   # finished: nothing to infer
    assert counting.calls == calls and result.outcomes[DATASET].inferred == 0

    # a second dataset in the same folder fills its column; the first stays
    run(_opts(tmp_path, tiny_checkpoint, lmudata, datasets=[SECOND]), engine=counting)
    summary = pd.read_csv(d / "summary.csv")
    assert not pd.isna(summary.loc[0, "AI2D"]) and not pd.isna(summary.loc[0, "OCRBench"])
    assert pd.isna(summary.loc[0, "MME"])
    assert json.loads((d / "run.json").read_text())["datasets"] == [DATASET, SECOND]


def test_mismatching_run_json_is_refused_unless_overwrite(tmp_path, tiny_checkpoint, engine, lmudata, capsys):
    counting = CountingEngine(engine)
    run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="r", limit=2), engine=counting)
    changes = ((dict(scm=ScmConfig()), "scm"), (dict(tiles="2-3/1-1"), "tiles"),
               (dict(model="InternVL2-2B", tiles="1-2"), "model"), (dict(max_new_tokens=5), "max_new_tokens"))
    for change, word in changes:
        with pytest.raises(RunError, match=word):
            run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="r", limit=2, **change), engine=counting)
    assert counting.samples == 2

    # the CLI prints it as one line and exits 2 (no engine is loaded for a refusal)
    from minimonkey_eval import cli

    argv = ["run", "--model", "MiniMonkey", "--model-path", tiny_checkpoint, "--data", DATASET, "--data-root", lmudata,
            "--work-dir", tmp_path / "results", "--run-name", "r", "--tiles", FAST_TILES, "--max-new-tokens", "4",
            "--scm"]
    capsys.readouterr()
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--overwrite" in err and len(err.splitlines()) == 1

    # a checkpoint change is a mismatch too
    meta_path = tmp_path / "results" / "r" / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["checkpoint_sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(RunError, match="checkpoint_sha256"):
        run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="r", limit=2), engine=counting)

    # --overwrite empties the folder and starts again
    run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="r", limit=2, scm=ScmConfig(), overwrite=True),
        engine=counting)
    meta = json.loads(meta_path.read_text())
    assert meta["scm"] is True and counting.samples == 4
    assert len(part_lines(tmp_path / "results" / "r", DATASET)) == 2

    # --scm-fix-off-by-one is part of the identity; a folder written before the field existed meant False
    assert meta["scm_fix_off_by_one"] is False
    with pytest.raises(RunError, match="scm_fix_off_by_one"):
        run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="r", limit=2, scm=ScmConfig(fix_off_by_one=True)),
            engine=counting)
    del meta["scm_fix_off_by_one"]
    meta_path.write_text(json.dumps(meta))
    run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="r", limit=2, scm=ScmConfig()), engine=counting)
    assert counting.samples == 4                                     # resumed: nothing inferred again
    with pytest.raises(RunError, match="scm_fix_off_by_one"):
        run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="r", limit=2, scm=ScmConfig(fix_off_by_one=True)),
            engine=counting)
    args = cli.build_parser().parse_args(["run", "--model", "MiniMonkey", "--data", DATASET, "--scm",
                                          "--scm-fix-off-by-one", "--scm-ratio", "0.25"])
    assert options_from_args(args, [DATASET]).scm == ScmConfig(0.25, fix_off_by_one=True)   # the CLI's three options
    args = cli.build_parser().parse_args(["run", "--model", "MiniMonkey", "--data", DATASET, "--scm-fix-off-by-one"])
    with pytest.raises(RunError, match="add --scm"):
        options_from_args(args, [DATASET])


def test_bad_options_are_one_line_errors(tmp_path, tiny_checkpoint, lmudata):
    with pytest.raises(RunError, match="unknown dataset"):
        run(_opts(tmp_path, tiny_checkpoint, lmudata, datasets=["NoSuchBench"]))
    with pytest.raises(RunError, match="model directory not found"):
        run(_opts(tmp_path, tiny_checkpoint, lmudata, model_path=str(tmp_path / "nope")))
    with pytest.raises(RunError, match="tiles"):
        run(_opts(tmp_path, tiny_checkpoint, lmudata, tiles="no-such-profile"))
    with pytest.raises(RunError, match="not found"):
        run(_opts(tmp_path, tiny_checkpoint, tmp_path, run_name="missing-tsv"))


def test_model_path_from_environment(tmp_path, tiny_checkpoint, engine, lmudata, monkeypatch):
    monkeypatch.setenv("INTERNVL2_PATH", str(tiny_checkpoint))
    result = run(_opts(tmp_path, None, lmudata, model="InternVL2-2B", model_path=None, tiles=None, limit=2),
                 engine=engine)
    meta = json.loads((result.run_dir / "run.json").read_text())
    assert result.run_name == "InternVL2-2B" and meta["model_path"] == str(tiny_checkpoint.resolve())
    assert meta["msac"] is False and meta["tiles"][DATASET]["kind"] == "dynamic" and meta["label"] == "InternVL2-2B"


def test_failed_sample_is_recorded_not_dropped(tmp_path, tiny_checkpoint, engine, lmudata, monkeypatch):
    """A sample whose prompt cannot be built is a failed record with a reason; the run goes on and scores it."""
    original = backend_base.message_for

    def message_for(model, dataset, line):
        if str(line["index"]) == "1":
            raise ValueError("corrupt image")
        return original(model, dataset, line)

    monkeypatch.setattr(backend_base, "message_for", message_for)
    result = run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="f", limit=3), engine=engine)
    samples = pd.read_csv(result.run_dir / f"{DATASET}_samples.csv", keep_default_na=False)
    row = samples[samples["index"] == 1].iloc[0]
    assert str(row["failed"]) == "True" and "corrupt image" in row["reason"] and float(row["score"]) == 0.0
    assert result.outcomes[DATASET].failed == 1 and len(samples) == 3
    pred = pd.read_excel(result.run_dir / f"MiniMonkey_{DATASET}.xlsx")
    assert pred.loc[pred["index"] == 1, "prediction"].iloc[0] == writers.FAILED_PREDICTION

    # --keep-failed leaves it; a plain rerun (cause fixed) retries only that sample
    counting = CountingEngine(engine)
    run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="f", limit=3, keep_failed=True), engine=counting)
    assert counting.samples == 0
    monkeypatch.setattr(backend_base, "message_for", original)
    result = run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="f", limit=3), engine=counting)
    assert counting.samples == 1 and result.outcomes[DATASET].failed == 0
    samples = pd.read_csv(result.run_dir / f"{DATASET}_samples.csv", keep_default_na=False)
    assert set(samples["failed"].astype(str)) == {"False"}


class BrokenDevice:
    """Engine proxy whose device half always fails (a broken setup, e.g. a missing kernel)."""

    def __init__(self, engine):
        self._engine = engine

    def generate_prepared(self, batch, **kwargs):
        raise RuntimeError("kernel missing")

    def __getattr__(self, name):
        return getattr(self._engine, name)


def test_every_sample_failing_stops_the_run(tmp_path, tiny_checkpoint, engine, lmudata):
    """A broken setup (every sample fails) is an error, not a score of 0."""
    with pytest.raises(RunError, match="all 3 samples failed.*kernel missing"):
        run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="broken", limit=3), engine=BrokenDevice(engine))
    assert not (tmp_path / "results" / "broken" / f"{DATASET}_score.csv").exists()


def test_internvl2_with_msac_plug_and_play(tmp_path, tiny_checkpoint, engine, lmudata):
    result = run(_opts(tmp_path, tiny_checkpoint, lmudata, model="InternVL2-2B", msac=True, tiles=None, limit=1),
                 engine=engine)
    meta = json.loads((result.run_dir / "run.json").read_text())
    assert result.run_name == "InternVL2-2B_msac" and meta["label"] == "InternVL2-2B + MSAC"
    assert meta["msac"] is True and meta["tiles"][DATASET] == {"kind": "msac", "tiles": "5-12/2-6",
                                                               "max_new_tokens": 4}


def test_cli_run_all_then_report(tmp_path, tiny_checkpoint, lmudata, capsys, monkeypatch):
    from minimonkey_eval import cli

    monkeypatch.setenv("MINIMONKEY_NO_PROGRESS", "1")
    work = tmp_path / "results"
    argv = ["run-all", "--model", "MiniMonkey", "--model-path", tiny_checkpoint, "--data", f"{DATASET},{SECOND}",
            "--data-root", lmudata, "--work-dir", work, "--tiles", FAST_TILES, "--max-new-tokens", 4, "--limit", 2,
            "--device", "cpu"]
    assert cli.main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    assert f"report: {work / 'report' / 'report.md'}" in out and (work / "report" / "report.md").exists()
    summary = pd.read_csv(work / "MiniMonkey_tiles1-2_1-1" / "summary.csv")
    assert not pd.isna(summary.loc[0, "AI2D"]) and not pd.isna(summary.loc[0, "OCRBench"])
    assert cli.main(["report", "--work-dir", str(work), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.md").exists() and (tmp_path / "rep" / "report.xlsx").exists()


def test_prediction_xlsx_keeps_text_as_text(tmp_path):
    """'=...' is not a formula, a long URL is not dropped, '007' stays a string, control characters go."""
    from vlmeval.smp import load

    texts = ["=1+1", "http://example.com/" + "a" * 3000, "007", "ok", "tab\tnew\nline"]
    df = pd.DataFrame({"index": range(5), "prediction": [writers.xlsx_text(t) for t in texts]})
    df.loc[4, "prediction"] = writers.xlsx_text("bad\x08char")
    path = tmp_path / "M_X.xlsx"
    writers.write_xlsx(df, path)
    back = load(str(path))["prediction"].tolist()
    assert back[:4] == texts[:4] and back[4] == "badchar"


def test_staging_thread_bucketing_and_auto_batch_change_nothing(tmp_path, tiny_checkpoint, engine, lmudata,
                                                                 monkeypatch):
    """Prompts are built on the pipeline's staging thread; predictions equal the batch-1, unstaged run's whatever
    the batch size ('auto' included), the staging threads and the bucketed order."""
    import threading

    threads: list[str] = []
    original = backend_base.message_for

    def message_for(model, dataset, line):
        threads.append(threading.current_thread().name)
        return original(model, dataset, line)

    monkeypatch.setattr(backend_base, "message_for", message_for)
    plain = run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="plain", datasets=[SECOND], batch_size=1,
                      prefetch=False), engine=engine)
    assert set(threads) == {threading.main_thread().name} and len(threads) == 10
    threads.clear()
    counting = CountingEngine(engine)
    fetched = run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="fetched", datasets=[SECOND], batch_size=3),
                  engine=counting)
    assert len(threads) == 10 and all(t.startswith("minimonkey-stage") for t in threads)
    assert counting.batches == [3, 3, 3, 1]
    assert merged_predictions(fetched.run_dir, SECOND) == merged_predictions(plain.run_dir, SECOND)
    counting = CountingEngine(engine)
    auto = run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="auto", datasets=[SECOND], batch_size="auto",
                     stage_threads=3), engine=counting)
    assert counting.batches == [1] * 10   # 'auto' on CPU: CPU_AUTO_BATCH_SIZE (padded prefill is slower there)
    assert merged_predictions(auto.run_dir, SECOND) == merged_predictions(plain.run_dir, SECOND)
    assert json.loads((auto.run_dir / "run.json").read_text())["batch_size"] == "auto"


class PrepareFails:
    """Engine proxy whose ``prepare`` (tiling + tokenizing) fails for the second sample it sees."""

    def __init__(self, engine):
        self._engine, self.seen = engine, 0

    def prepare(self, images, question, tiling=None):
        self.seen += 1
        if self.seen == 2:
            raise ValueError("tiler exploded (test)")
        return self._engine.prepare(images, question, tiling)

    def __getattr__(self, name):
        return getattr(self._engine, name)


def test_a_sample_failing_to_prepare_is_a_failed_record(tmp_path, tiny_checkpoint, engine, lmudata):
    result = run(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="prep", limit=3), engine=PrepareFails(engine))
    records = merged_predictions(result.run_dir, DATASET)
    assert sum(failed for _, _, failed in records) == 1 and len(records) == 3   # the second one staged
    samples = pd.read_csv(result.run_dir / f"{DATASET}_samples.csv", keep_default_na=False)
    failed = samples[samples["failed"].astype(str) == "True"]
    assert list(failed["reason"]) == ["prepare: ValueError: tiler exploded (test)"]


def test_stage_threads_default_shares_the_cores_between_ranks(tmp_path, tiny_checkpoint, lmudata, monkeypatch):
    from minimonkey_eval.eval.backends.engine_backend import EngineBackend
    from minimonkey_eval.eval.run.distributed import DistContext
    from minimonkey_eval.models import pipeline

    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 16)
    backend = EngineBackend(_opts(tmp_path, tiny_checkpoint, lmudata, run_name="threads"), DistContext())
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert backend.stage_threads == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert backend.stage_threads == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert backend.stage_threads == 3
    backend.opts.stage_threads = 5
    assert backend.stage_threads == 5
