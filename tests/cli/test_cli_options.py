"""Every CLI option error is one ``error:`` line and exit 2: this walks every subcommand's typed / choice options
with a bad value, plus unknown options, a missing required option and an unknown subcommand."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.runner_utils import cli_env

from minimonkey_eval import cli


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _checked_options():
    """(subcommand, option) for every option argparse itself checks: a type other than str / Path, or choices."""
    out = []
    for name, sub in _subparsers().items():
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            if action.choices is not None or action.type not in (None, str, Path):   # paths: checked on use
                out.append((name, action.option_strings[-1]))
    return out


CHECKED = _checked_options()


def test_the_walk_covers_every_subcommand_with_checked_options():
    names = {n for n, _ in CHECKED}
    assert {"run", "run-all", "chat", "demo", "bench", "sweep", "make-fixtures"} <= names
    assert len(CHECKED) >= 30


def _one_error_line(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    lines = [x for x in captured.err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


@pytest.mark.parametrize("command,option", CHECKED)
def test_bad_value_is_one_line(command, option, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # an option that takes the bad value must not write into the checkout
    line = _one_error_line([command, option, "zz-not-valid"], capsys)
    assert option in line


@pytest.mark.parametrize("argv", [["run", "--no-such-option"], ["run"], ["bogus"], [], ["report", "--work-dir"]])
def test_usage_errors_are_one_line(argv, capsys):
    _one_error_line(argv, capsys)


def test_in_a_real_process_too():
    proc = subprocess.run([sys.executable, "-m", "minimonkey_eval.cli", "run", "--limit", "abc"], env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert [x for x in proc.stderr.splitlines() if x.strip()] == [
        "error: minimonkey-eval run: argument --limit: expected an integer, got 'abc' (see minimonkey-eval run --help)"]


LONG = "a" * 300   # one path component over the usual 255-byte limit (ENAMETOOLONG)
NAME_CASES = [["report", "--work-dir", LONG], ["demo", "--out", LONG], ["make-fixtures", "--out", f"{LONG}/x"],
              ["compare", LONG, LONG], ["chat", "--model-path", LONG, "--question", "q"],
              ["run", "--model", "MiniMonkey", "--model-path", LONG, "--data", "MME"],
              ["sweep", "--model", "MiniMonkey", "--model-path", LONG, "--data", "MME", "--out", LONG]]


@pytest.mark.parametrize("argv", NAME_CASES, ids=[a[0] for a in NAME_CASES])
def test_a_path_over_the_name_limit_is_one_line(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = [x for x in captured.err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    assert len(lines[0]) < 400   # the name is shortened, not printed whole


def test_a_path_that_is_not_utf8_is_one_line(tmp_path):
    """In a real process: pytest-xdist could not carry the undecodable name in captured output back."""
    bad = os.fsdecode(b"bad\xffname")
    (tmp_path / bad).mkdir()
    proc = subprocess.run([sys.executable, "-m", "minimonkey_eval.cli", "report", "--work-dir", bad], env=cli_env(),
                          capture_output=True, timeout=120, cwd=tmp_path)
    err = proc.stderr.decode("utf-8", "backslashreplace")
    lines = [x for x in err.splitlines() if x.startswith("error")]
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and "not valid UTF-8" in lines[0] and "bad\\xffname" in lines[0], err
