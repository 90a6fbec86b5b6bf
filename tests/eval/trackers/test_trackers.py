"""``--log-to wandb|mlflow``, offline: a scored run folder (injected answers, vlmeval's scoring), its report and a
sweep logged to W&B in offline mode (read back from the offline run's record file) and to a local MLflow file store
(read back with ``MlflowClient``): identity, headlines with the report's CIs, score sheets and report as artifacts,
the sweep's points as a table; logging twice is idempotent; a missing library or tracker name is one line."""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
from helpers.injected_runs import injected_run

from minimonkey_eval.cli import main
from minimonkey_eval.datasets.fixtures import write_sample_tsvs
from minimonkey_eval.datasets.registry import get_benchmark
from minimonkey_eval.eval.report.build import build_report
from minimonkey_eval.eval.stats.compare import fmt
from minimonkey_eval.eval.sweep.state import STATE
from minimonkey_eval.eval.trackers.log import log_runs, log_sweep
from minimonkey_eval.eval.trackers.options import INSTALL, TrackerError, TrackerOptions, parse_log_to
from minimonkey_eval.eval.trackers.records import KEY_TAG, tracked_run

DATASET = "OCRBench"     # 0/1 per question: a Wilson CI from any number of rows
ROWS = 10


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_checkpoint):
    """A work dir with one scored run folder, its report, and a sweep folder of two points."""
    base = tmp_path_factory.mktemp("trackers")
    lmudata = base / "LMUData"
    write_sample_tsvs(lmudata, datasets=[DATASET], n=ROWS)
    work = base / "results"
    run_dir, _ = injected_run(work, lmudata, tiny_checkpoint, "MiniMonkey", "mm", p_right=0.6, seed=3,
                              datasets=[DATASET])
    report = build_report(work)
    sweep = base / "sweep"
    sweep.mkdir()
    rows = {f"pt{i}/{DATASET}": {"model": "MiniMonkey", "dataset": DATASET, "tiles": tiles, "scm": "off",
                                 "headline": head, "ci_lo": head - 1, "ci_hi": head + 1, "visual_tokens": tokens,
                                 "setting": {"nested": "left out of the table"}}
            for i, (tiles, head, tokens) in enumerate([("1-6", 4.0, 1536.0), ("9-24/5-8", 6.0, 6144.0)])}
    (sweep / STATE).write_text(json.dumps({"rows": rows}))
    (sweep / "sweep.csv").write_text("tiles,headline\n1-6,4.0\n9-24/5-8,6.0\n")
    return work, run_dir, report, sweep


def expected_headline(run_dir: Path) -> float:
    lines = (run_dir / f"{DATASET}_score.csv").read_text().splitlines()
    return float(next(line.split(",")[2] for line in lines if ",headline," in line))


def test_parse_log_to():
    assert parse_log_to(["wandb,mlflow", "MLflow", " wandb "]) == ["wandb", "mlflow"]
    with pytest.raises(TrackerError, match="unknown tracker 'neptune'; choose from wandb, mlflow"):
        parse_log_to(["wandb,neptune"])


def test_tracked_run_holds_identity_and_the_reports_cis(results):
    work, run_dir, report, _ = results
    rec = tracked_run(run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    assert rec.params["model"] == "MiniMonkey" and rec.params["checkpoint_sha256"] == meta["checkpoint_sha256"]
    assert rec.params["versions.torch"] == meta["versions"]["torch"]
    assert rec.params["datasets"] == DATASET and "results" not in rec.params and "argv" not in rec.params
    (head,) = rec.headlines
    assert head.column == "OCRBench" and head.headline == expected_headline(run_dir)
    assert head.n == ROWS and head.ci_low <= head.headline <= head.ci_high and head.ci_low < head.ci_high
    # the interval the report shows for this run, to its decimals
    d = get_benchmark(DATASET).stat_decimals
    shown = f"| {fmt(head.headline, d)} | [{fmt(head.ci_low, d)}, {fmt(head.ci_high, d)}] |"
    assert shown in report.markdown.read_text()
    assert rec.metrics == {"OCRBench/headline": head.headline, "OCRBench/ci_low": head.ci_low,
                           "OCRBench/ci_high": head.ci_high}
    assert {p.name for p in rec.sheets} == {"run.json", "summary.csv", f"{DATASET}_score.csv",
                                             f"{DATASET}_samples.csv"}


# ------------------------------------------------------------------------------------------------ W&B offline
def wandb_records(path: Path):
    """The protobuf records of an offline W&B run file (``run-<id>.wandb``): a LevelDB-style log of 32 KiB blocks,
    each record a 7-byte header (CRC, little-endian length, type: full / first / middle / last) and its bytes."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, parts = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:                          # a block's tail too short for a header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (2, 3):
            parts = (parts if kind == 3 else b"") + chunk
            continue
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts + chunk if kind == 4 else chunk)
            parts = b""
            yield record


def read_offline_run(folder: Path) -> dict:
    """config, summary, tags and artifacts (name -> file paths) of one offline run folder."""
    (run_file,) = folder.glob("run-*.wandb")
    out = {"config": {}, "summary": {}, "tags": [], "artifacts": {}}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
            out["tags"] = list(record.run.tags)
            out["name"] = record.run.display_name
        elif kind == "summary":
            for u in record.summary.update:
                out["summary"]["/".join(u.nested_key) or u.key] = json.loads(u.value_json)
        elif kind == "artifact":
            out["artifacts"][record.artifact.name] = [c.path for c in record.artifact.manifest.contents]
    return out


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason=f"the trackers extra is not installed ({INSTALL})")
    for var in ("DIR", "CACHE_DIR", "CONFIG_DIR", "DATA_DIR", "ARTIFACT_DIR"):
        monkeypatch.setenv(f"WANDB_{var}", str(tmp_path / var.lower()))
        (tmp_path / var.lower()).mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")      # any network attempt would fail
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path / "dir"


def test_logging_a_report_reads_no_folder_and_computes_no_ci_again(results, tmp_path, monkeypatch):
    """The report hands over the runs it read and the CIs it computed; a folder it did not read is read here."""
    from minimonkey_eval.eval.trackers import log, mlflow_sink, records

    work, run_dir, report, _ = results
    expected = tracked_run(run_dir)
    assert report.runs and {c.run for c in report.run_cis} == {"mm"}
    logged = []
    monkeypatch.setattr(mlflow_sink, "log_run", lambda rec, opts, work_dir: logged.append(rec) or rec.name)

    def refuse(*_args, **_kwargs):
        raise AssertionError("read or computed a second time")

    monkeypatch.setattr(records, "run_cis", refuse)
    monkeypatch.setattr(records, "load_run", refuse)
    monkeypatch.setattr(log, "load_runs", refuse)
    opts = TrackerOptions(log_to=["mlflow"], mlflow_uri=str(tmp_path / "m"))
    assert log_runs(opts, work, report=report) == ["mm"]
    assert log_runs(opts, work, [run_dir], report) == ["mm"]
    for rec in logged:
        assert rec.metrics == expected.metrics and rec.headline_table().equals(expected.headline_table())
        assert rec.report and {p.name for p in rec.report} >= {"report.md", "report.xlsx", "report.html"}
    monkeypatch.undo()
    monkeypatch.setattr(mlflow_sink, "log_run", lambda rec, opts, work_dir: logged.append(rec) or rec.name)
    from minimonkey_eval.eval.report.collect import ReportPaths

    empty = ReportPaths(*(tmp_path / n for n in ("r", "a", "b", "c", "d", "e")))   # a report that read no run
    assert log_runs(opts, work, [run_dir], empty) == ["mm"]
    assert logged[-1].metrics == expected.metrics


def test_wandb_offline_run_and_sweep_read_back(results, wandb_offline):
    work, run_dir, report, sweep = results
    opts = TrackerOptions(log_to=["wandb"], wandb_dir=str(wandb_offline))
    (line,) = log_runs(opts, work, [run_dir], report)
    assert line.startswith("wandb: run mm offline in ") and "wandb sync " in line
    (folder,) = (wandb_offline / "wandb").glob("offline-run-*")
    run = read_offline_run(folder)
    rec = tracked_run(run_dir)
    assert run["name"] == "mm" and run["tags"] == ["MiniMonkey"]
    assert run["config"]["model"] == "MiniMonkey" and run["config"][KEY_TAG] == rec.key_hash
    assert run["config"]["checkpoint_sha256"] == rec.params["checkpoint_sha256"]
    for key, value in rec.metrics.items():
        assert math.isclose(run["summary"][key], value), key
    (results_art,) = [files for name, files in run["artifacts"].items() if name.startswith("results-")]
    assert {"scores/run.json", f"scores/{DATASET}_score.csv", f"scores/{DATASET}_samples.csv", "report/report.md",
            "report/report.xlsx", "report/report.html"} <= set(results_art)
    (table,) = (folder / "files" / "media" / "table").glob("headlines_*.table.json")
    headlines = json.loads(table.read_text())
    row = dict(zip(headlines["columns"], headlines["data"][0]))
    assert row["column"] == "OCRBench" and math.isclose(row["ci_low"], rec.headlines[0].ci_low)

    (line,) = log_sweep(opts, sweep)
    assert line.startswith("wandb: sweep sweep-sweep (2 points) offline")
    (sweep_folder,) = {p for p in (wandb_offline / "wandb").glob("offline-run-*")} - {folder}
    (table,) = (sweep_folder / "files" / "media" / "table").glob("sweep_points_*.table.json")
    points = json.loads(table.read_text())
    assert [dict(zip(points["columns"], r))["tiles"] for r in points["data"]] == ["1-6", "9-24/5-8"]
    assert "setting" not in points["columns"]
    sweep_run = read_offline_run(sweep_folder)
    (files,) = [f for name, f in sweep_run["artifacts"].items() if name.startswith("sweep-")]
    assert set(files) == {"sweep.csv", STATE}


# ------------------------------------------------------------------------------------------------ MLflow file store
@pytest.fixture
def mlflow_store(tmp_path):
    pytest.importorskip("mlflow", reason=f"the trackers extra is not installed ({INSTALL})")
    return tmp_path / "mlruns"


def test_mlflow_file_store_read_back_and_idempotent(results, mlflow_store):
    from mlflow.tracking import MlflowClient

    work, run_dir, report, sweep = results
    opts = TrackerOptions(log_to=["mlflow"], mlflow_uri=str(mlflow_store), project="team-evals")
    first = log_runs(opts, work, report=report)       # every run folder under the work dir
    again = log_runs(opts, work, report=report)
    assert first == again and len(first) == 1 and first[0].startswith(f"mlflow: run mm in {mlflow_store.as_uri()}")
    client = MlflowClient(tracking_uri=mlflow_store.as_uri())
    exp = client.get_experiment_by_name("team-evals")
    (run,) = client.search_runs([exp.experiment_id])               # logged twice: one run
    rec = tracked_run(run_dir)
    assert run.info.run_name == "mm" and run.info.status == "FINISHED"
    assert run.data.params["model"] == "MiniMonkey"
    assert run.data.params["versions.torch"] == rec.params["versions.torch"]
    assert run.data.tags[KEY_TAG] == rec.key_hash and run.data.tags["identity.msac"] == "True"
    assert run.data.metrics == pytest.approx(rec.metrics)
    assert run.data.metrics["OCRBench/headline"] == expected_headline(run_dir)
    artifacts = {a.path for top in ("scores", "report") for a in client.list_artifacts(run.info.run_id, top)}
    assert {f"scores/{DATASET}_score.csv", f"scores/{DATASET}_samples.csv", "scores/summary.csv",
            "report/report.md", "report/report.html", "report/report.xlsx"} <= artifacts
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "headlines.json", str(mlflow_store.parent)))
                       .read_text())
    assert len(table["data"]) == 1                                 # not appended to by the second log
    assert dict(zip(table["columns"], table["data"][0]))["status"] == rec.headlines[0].status

    (line,) = log_sweep(opts, sweep)
    assert "sweep sweep-sweep (2 points)" in line
    (sweep_run,) = client.search_runs([exp.experiment_id], filter_string="tags.kind = 'sweep'")
    points = json.loads(Path(client.download_artifacts(sweep_run.info.run_id, "sweep_points.json",
                                                       str(mlflow_store.parent / "dl"))).read_text())
    assert [dict(zip(points["columns"], r))["headline"] for r in points["data"]] == [4.0, 6.0]
    assert {a.path for a in client.list_artifacts(sweep_run.info.run_id, "sweep")} == {"sweep/sweep.csv",
                                                                                    f"sweep/{STATE}"}


def test_report_log_to_mlflow_from_the_command_line(results, mlflow_store, tmp_path, capsys):
    work, _, _, _ = results
    code = main(["report", "--work-dir", str(work), "--out", str(tmp_path / "report"), "--log-to", "mlflow",
                 "--mlflow-uri", str(mlflow_store)])
    out = capsys.readouterr().out
    assert code == 0 and f"mlflow: run mm in {mlflow_store.as_uri()} (experiment minimonkey-eval" in out


def test_unknown_tracker_and_missing_library_are_one_line(results, tmp_path, capsys, monkeypatch):
    work, run_dir, _, _ = results
    with pytest.raises(SystemExit) as exc:
        main(["report", "--work-dir", str(work), "--log-to", "wandb,comet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown tracker 'comet'; choose from wandb, mlflow" in err
    monkeypatch.setitem(sys.modules, "wandb", None)                # as if not installed
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    for tracker in ("wandb", "mlflow"):
        with pytest.raises(TrackerError, match=rf"--log-to {tracker} needs .*{re.escape(INSTALL)}$"):
            log_runs(TrackerOptions(log_to=[tracker], mlflow_uri=str(tmp_path / "m")), work, [run_dir])
