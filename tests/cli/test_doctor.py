"""``minimonkey-eval doctor`` on the synthetic fixtures, and the quiet console (-q/-v, vlmeval's noise silenced)."""
from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys

import pytest
from helpers.runner_utils import cli_env

from minimonkey_eval import cli
from minimonkey_eval.preflight import FAIL, OK, WARN, version_check

DATASETS = ["MME", "POPE"]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """Two synthetic TSVs (2 questions each) and a tiny checkpoint in two shards."""
    from minimonkey_eval.datasets.fixtures import write_sample_tsvs
    from minimonkey_eval.models.tiny_checkpoint import write_checkpoint

    root = tmp_path_factory.mktemp("doctor")
    write_sample_tsvs(root / "LMUData", datasets=DATASETS, n=2)
    write_checkpoint(root / "checkpoint", shards=2)
    return root


@pytest.fixture
def copy(fixtures, tmp_path):
    """A private copy of the fixtures a test may edit."""
    shutil.copytree(fixtures, tmp_path / "f")
    return tmp_path / "f"


def doctor(capsys, *argv) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = cli.main(["doctor", "--no-env", *[str(a) for a in argv]])
    return rc, capsys.readouterr().out.splitlines()


def row(lines: list[str], item: str) -> str:
    hits = [line for line in lines if line.split()[1:2] == [item]]
    assert len(hits) == 1, lines
    return hits[0]


def test_fixtures_pass_with_a_named_not_vlmevalkit_warning(fixtures, capsys):
    rc, lines = doctor(capsys, "--data-root", fixtures / "LMUData", "--data", ",".join(DATASETS),
                       "--model-path", fixtures / "checkpoint")
    assert rc == 0, lines
    for name in DATASETS:
        line = row(lines, name)
        assert f" {WARN} " in line and "synthetic fixture, not VLMEvalKit's file" in line and "rows" in line
    ckpt = row(lines, "checkpoint")
    assert f" {OK} " in ckpt and "InternLM2ForCausalLM" in ckpt and "2 file(s)" in ckpt and "no weight read" in ckpt
    assert lines[-1].startswith("doctor: nothing would stop a run (2 warning(s))")


def test_registered_md5_matches_then_an_edit_is_named(copy, capsys, monkeypatch):
    import pandas as pd

    from minimonkey_eval.datasets.local import dataset_class, file_md5, import_vlmeval

    tsv = copy / "LMUData" / "MME.tsv"
    import_vlmeval(copy / "LMUData")
    monkeypatch.setitem(dataset_class("MME").DATASET_MD5, "MME", file_md5(tsv))
    rc, lines = doctor(capsys, "--data-root", copy / "LMUData", "--data", "MME")
    assert rc == 0 and f" {OK} " in row(lines, "MME") and "md5 matches VLMEvalKit's" in row(lines, "MME")
    df = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    df.loc[0, "question"] += " Please answer yes or no."               # one question edited
    df.to_csv(tsv, sep="\t", index=False)
    rc, lines = doctor(capsys, "--data-root", copy / "LMUData", "--data", "MME")
    line = row(lines, "MME")
    assert rc == 0 and f" {WARN} " in line and f"md5 {file_md5(tsv)} is not VLMEvalKit's" in line
    assert "an older or edited MME version: scores are not comparable to the card" in line


def test_missing_tsv_exits_1_naming_it(copy, capsys):
    (copy / "LMUData" / "POPE.tsv").unlink()
    rc, lines = doctor(capsys, "--data-root", copy / "LMUData", "--data", "MME,POPE")
    assert rc == 1
    failing = [line for line in lines if f" {FAIL} " in line]
    assert len(failing) == 1 and str(copy / "LMUData" / "POPE.tsv") + " not found" in failing[0]
    assert lines[-1].startswith("doctor: 1 problem(s) would stop a run")


def test_undecodable_image_exits_1_naming_the_row(copy, capsys):
    import pandas as pd

    tsv = copy / "LMUData" / "POPE.tsv"
    df = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    df.loc[1, "image"] = "A" * 200                       # valid base64, not an image
    df.to_csv(tsv, sep="\t", index=False)
    rc, lines = doctor(capsys, "--data-root", copy / "LMUData", "--data", "POPE", "--sample", 0)
    line = row(lines, "POPE")
    assert rc == 1 and f" {FAIL} " in line and f"index {df.loc[1, 'index']}): image cell does not decode" in line


def test_missing_shard_exits_1_naming_it(copy, capsys):
    index = json.loads((copy / "checkpoint" / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[-1]
    (copy / "checkpoint" / shard).unlink()
    rc, lines = doctor(capsys, "--data", "MME", "--model-path", copy / "checkpoint")
    line = row(lines, "checkpoint")
    assert rc == 1 and f" {FAIL} " in line and f"{copy / 'checkpoint' / shard}: shard listed in" in line


def test_bad_config_exits_1_naming_the_field(copy, capsys):
    config = copy / "checkpoint" / "config.json"
    raw = json.loads(config.read_text())
    raw["llm_config"]["num_attention_heads"] = "many"
    config.write_text(json.dumps(raw))
    rc, lines = doctor(capsys, "--data", "MME", "--model-path", copy / "checkpoint")
    line = row(lines, "checkpoint")
    assert rc == 1 and f" {FAIL} " in line and str(config) in line and "num_attention_heads" in line


def test_no_data_root_is_a_warning_and_a_missing_one_a_failure(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LMUData", raising=False)
    rc, lines = doctor(capsys, "--data", "MME")
    assert rc == 0 and f" {WARN} " in row(lines, "data-root")
    rc, lines = doctor(capsys, "--data-root", tmp_path / "nowhere")
    assert rc == 1 and str(tmp_path / "nowhere") in row(lines, "data-root")


def test_environment_rows_and_version_ranges(capsys):
    rc, lines = doctor(capsys, "--data", "MME")          # --no-env: no environment row
    assert not any(line.startswith("env ") for line in lines)
    capsys.readouterr()
    assert cli.main(["doctor", "--data", "MME"]) == 0
    out = capsys.readouterr().out
    for item in ("python", "torch", "cuda", "flash-attn", "transformers", "vlmeval"):
        assert any(line.split()[:2] == ["env", item] for line in out.splitlines()), out
    assert version_check("torch", "2.3.0", ">=2.4").status == WARN
    assert version_check("torch", "2.5.1+cu121", ">=2.4,<=2.14.1").status == OK
    assert version_check("vlmeval", None, "==0.0.20").status == FAIL


# ------------------------------------------------------------------------------------------------ the console
def test_quiet_and_verbose_before_or_after_any_command():
    parser = cli.build_parser()
    for argv, level, progress in ((["doctor"], None, None), (["-q", "doctor"], -1, None),
                                  (["doctor", "-q"], -1, None), (["-vv", "report"], 2, None),
                                  (["report", "-v"], 1, None), (["--no-progress", "demo"], None, False),
                                  (["demo", "--no-progress", "-v"], 1, False)):
        args = parser.parse_args(argv)
        assert (args.verbosity, args.progress) == (level, progress), argv


def test_no_library_bars_silences_tqdm_and_restores_it():
    from tqdm import std, tqdm

    from minimonkey_eval.console import no_library_bars

    before = std.tqdm.__dict__["__init__"]
    sink = io.StringIO()
    with no_library_bars():
        for _ in tqdm(range(3), file=sink):
            pass
    assert sink.getvalue() == "" and std.tqdm.__dict__["__init__"] is before
    for _ in tqdm(range(3), file=sink):
        pass
    assert "3/3" in sink.getvalue()


def test_quiet_logger_restores_the_level(caplog):
    from minimonkey_eval.console import quiet_logger

    logger = logging.getLogger("vlmeval.dataset.utils.multiple_choice")
    with caplog.at_level(logging.WARNING):
        with quiet_logger("vlmeval"):
            logger.warning("Exact Matching mode")
        assert not caplog.records
        logger.warning("after")
    assert [r.message for r in caplog.records] == ["after"]


def test_importing_vlmeval_prints_nothing(tmp_path):
    code = ("import logging; from minimonkey_eval.console import setup_logging; setup_logging(0); "
            "from minimonkey_eval.datasets.local import import_vlmeval; import_vlmeval(); "
            "logging.getLogger().error('ours still shows')")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(LMUData=str(tmp_path)), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stderr.strip() == "ERROR root: ours still shows", proc.stderr


def test_gpu_rows_name_each_device_and_its_memory(monkeypatch):
    """No GPU on CI: torch.cuda is stood in for, to check what the rows say (the real call is run on a GPU box)."""
    from types import SimpleNamespace

    import torch

    from minimonkey_eval.preflight import check_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(name=f"NVIDIA H200 #{i}"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (100 * 2**30, 140 * 2**30))
    rows = check_devices()
    assert [r.item for r in rows] == ["cuda", "cuda:0", "cuda:1"] and all(r.status == OK for r in rows)
    assert "2 GPU(s), bf16 yes" in rows[0].detail and rows[2].detail == "NVIDIA H200 #1, 140.0 GiB (100.0 GiB free)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_devices()[0].status == "info"


@pytest.mark.parametrize("offline, progress, shown", [(True, True, ""), (False, True, "warning bar"),
                                                      (False, False, "warning")])
def test_scoring_quiet_policy(offline, progress, shown, caplog):
    """Offline scoring: neither vlmeval's warnings nor its bars; a judge's warnings stay, its bar only with progress."""
    from tqdm import tqdm

    from minimonkey_eval.eval.scoring import vlmeval_scoring_quiet

    sink = io.StringIO()
    with caplog.at_level(logging.WARNING), vlmeval_scoring_quiet(offline=offline, progress=progress):
        logging.getLogger("vlmeval.dataset.utils.multiple_choice").warning("Exact Matching mode")
        for _ in tqdm(range(3), file=sink):
            pass
    seen = ["warning"] * bool(caplog.records) + ["bar"] * ("3/3" in sink.getvalue())
    assert " ".join(seen) == shown


def test_a_run_says_a_tsv_is_not_vlmevalkits_once(fixtures, tmp_path, caplog):
    """A run loads each dataset twice (infer, then score): the md5 warning is printed once, in the doctor's words."""
    from minimonkey_eval.datasets.local import load_dataset

    shutil.copy(fixtures / "LMUData" / "POPE.tsv", tmp_path / "POPE.tsv")   # no manifest beside it: a user's file
    with caplog.at_level(logging.WARNING, logger="minimonkey_eval.datasets.local"):
        load_dataset("POPE", tmp_path)
        load_dataset("POPE", tmp_path)
    warned = [r.getMessage() for r in caplog.records if "md5" in r.getMessage()]
    assert len(warned) == 1 and "an older or edited POPE version: scores are not comparable to the card" in warned[0]


def test_load_reads_the_weights_when_asked(fixtures, capsys):
    rc, lines = doctor(capsys, "--data", "MME", "--model-path", fixtures / "checkpoint", "--load", "--device", "cpu",
                       "--dtype", "fp32")
    assert rc == 0 and "weights loaded on cpu as torch.float32" in row(lines, "load")


def test_quiet_turns_the_bars_off_in_main(monkeypatch):
    from minimonkey_eval.cli import doctor as doctor_command

    seen = []
    monkeypatch.setattr(doctor_command, "command", lambda args: seen.append(args.progress) or 0)
    for argv in (["-q", "doctor"], ["doctor"], ["doctor", "-q"], ["doctor", "--no-progress"]):
        assert cli.main(argv) == 0
    assert seen == [False, None, False, False]


@pytest.mark.parametrize("verbosity, shown", [(-1, ["ERROR x: e"]), (0, ["WARNING x: w", "ERROR x: e"]),
                                              (1, ["INFO x: i", "WARNING x: w", "ERROR x: e"])])
def test_setup_logging_levels(verbosity, shown):
    code = ("import logging; from minimonkey_eval.console import setup_logging; "
            f"setup_logging({verbosity}); log = logging.getLogger('x'); log.debug('d'); log.info('i'); "
            "log.warning('w'); log.error('e')")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert proc.stderr.splitlines() == shown
