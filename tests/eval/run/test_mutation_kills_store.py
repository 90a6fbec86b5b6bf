"""The prediction store's durability and resume rules, observed through the bytes on disk and a spy on the system
calls (``os.fsync`` / ``os.replace`` / ``os.ftruncate`` ordering, ENOSPC): what resume depends on."""
from __future__ import annotations

import errno
import json
import logging
import os
import threading

import pytest

from minimonkey_eval.eval.run.store import (
    PartWriter,
    PredictionStore,
    RunLock,
    RunLockedError,
    make_record,
    merge_records,
    read_records,
)
from minimonkey_eval.eval.runfiles import files as f
from minimonkey_eval.eval.runfiles.files import SymlinkError, atomic_write_bytes


class Spy:
    """Records ('write' | 'fsync' | 'ftruncate' | 'replace', what) in call order, then calls the real function."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, object]] = []
        for name in ("write", "fsync", "ftruncate", "replace"):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(name, real))

    def _wrap(self, name, real):
        def call(*args):
            target = args[0]
            if isinstance(target, int):
                try:
                    target = os.readlink(f"/proc/self/fd/{target}")
                except OSError:
                    pass
            self.calls.append((name, str(target) if name != "replace" else (str(args[0]), str(args[1]))))
            return real(*args)
        return call

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


# ------------------------------------------------------------------------------------------------ appends
def test_each_batch_is_one_write_then_an_fsync_of_the_part_file(tmp_path, monkeypatch):
    path = tmp_path / "X.part0.jsonl"
    with PartWriter(path) as writer:
        spy = Spy(monkeypatch)
        writer.append([make_record(0, "a"), make_record(1, "ü")])
        writer.append([])                                            # nothing to write: no call at all
        writer.append([make_record(2, "c")])
    assert spy.names() == ["write", "fsync", "write", "fsync"]
    assert all(target == str(path) for _, target in spy.calls)
    assert path.read_bytes() == line(make_record(0, "a")) + line(make_record(1, "ü")) + line(make_record(2, "c"))


def test_a_short_write_is_continued_not_lost(tmp_path, monkeypatch):
    path = tmp_path / "X.part0.jsonl"
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:5])))     # 5 bytes at a time
    with PartWriter(path) as writer:
        writer.append([make_record(0, "a long enough prediction")])
    assert path.read_bytes() == line(make_record(0, "a long enough prediction"))


def test_torn_tail_is_cut_and_synced_before_the_next_append(tmp_path, monkeypatch, caplog):
    path = tmp_path / "X.part0.jsonl"
    good = line(make_record(0, "a"))
    path.write_bytes(good + b'{"index": 1, "pred')
    spy = Spy(monkeypatch)
    with caplog.at_level(logging.WARNING), PartWriter(path) as writer:
        assert path.read_bytes() == good
        writer.append([make_record(1, "b")])
    assert spy.names() == ["ftruncate", "fsync", "write", "fsync"]
    assert "dropping a torn last line (18 bytes)" in caplog.text
    assert path.read_bytes() == good + line(make_record(1, "b"))


def test_torn_tail_longer_than_the_read_block(tmp_path):
    path = tmp_path / "X.part0.jsonl"
    good = line(make_record(0, "a")) + line(make_record(1, "b"))
    path.write_bytes(good + b"x" * ((1 << 16) * 2 + 7))                 # a torn line spanning three 64 KiB blocks
    PartWriter(path).close()
    assert path.read_bytes() == good
    path.write_bytes(b"y" * ((1 << 16) + 3))                            # no newline at all: everything is torn
    PartWriter(path).close()
    assert path.read_bytes() == b""


def test_clean_or_empty_part_files_are_not_touched(tmp_path, monkeypatch):
    path = tmp_path / "X.part0.jsonl"
    spy = Spy(monkeypatch)
    PartWriter(path).close()                                             # created empty
    path.write_bytes(line(make_record(0, "a")))
    PartWriter(path).close()
    assert spy.names() == [] and path.read_bytes() == line(make_record(0, "a"))


# ------------------------------------------------------------------------------------------------ reading
def test_null_or_non_text_prediction_is_not_done(tmp_path, caplog):
    """A record whose prediction is null (or not text) is unreadable: resume answers the sample again."""
    path = tmp_path / "X.part0.jsonl"
    path.write_bytes(b'{"index": 0, "prediction": null}\n{"index": 1, "prediction": 3}\n'
                     b'{"prediction": "no index"}\n{"index": 2}\n[1, 2]\n\xff\xfe\n\n   \n'
                     b'{"index": 3, "prediction": "ok"}\n')
    with caplog.at_level(logging.WARNING):
        records = read_records(path)
    assert records == [{"index": 3, "prediction": "ok", "failed": False, "reason": ""}]
    assert "skipped 6 unreadable line(s)" in caplog.text
    assert PredictionStore(tmp_path, "X").load().keys() == set()            # not in a predictions/ folder


def test_a_record_keeps_its_own_failed_and_reason(tmp_path):
    path = tmp_path / "X.part0.jsonl"
    path.write_bytes(line(make_record(0, "", True, "oom", seconds=1.5)))
    assert read_records(path) == [{"index": 0, "prediction": "", "failed": True, "reason": "oom", "seconds": 1.5}]
    assert read_records(tmp_path / "missing.jsonl") == []


def test_make_record_shapes():
    assert make_record(4, None) == {"index": 4, "prediction": "", "failed": False, "reason": ""}
    assert make_record("a", 7, failed=1, reason=None, extra=[1]) == \
        {"index": "a", "prediction": "7", "failed": True, "reason": "", "extra": [1]}


def test_merge_keeps_the_first_success_and_the_last_failure():
    parts = [[make_record(1, "first"), make_record(2, "", True, "a")],
             [make_record(1, "second"), make_record(2, "", True, "b"), make_record(3, "", True, "c")],
             [make_record(3, "retried"), make_record(2.0, "fixed")]]
    merged = merge_records(parts)
    assert {k: (r["prediction"], r["failed"]) for k, r in merged.items()} == \
        {"1": ("first", False), "2": ("fixed", False), "3": ("retried", False)}


def test_ten_or_more_ranks_load_in_rank_order_and_stray_files_are_ignored(tmp_path):
    store = PredictionStore(tmp_path, "X")
    for rank in range(12):
        with store.writer(rank) as writer:
            writer.append([make_record(rank, f"r{rank}"), make_record(100, f"from rank {rank}")])
    folder = store.part_path(0).parent
    (folder / "X.part0-old.jsonl").write_text("not json at all\n")
    (folder / "X.part.jsonl").write_text("x\n")
    (folder / "Y.part0.jsonl").write_bytes(line(make_record(100, "other dataset")))
    assert [p.name for p in store.part_paths()] == [f"X.part{r}.jsonl" for r in range(12)]
    loaded = store.load()
    assert loaded["100"]["prediction"] == "from rank 0" and len(loaded) == 13


def test_write_merged_is_atomic_and_in_order(tmp_path):
    store = PredictionStore(tmp_path, "X")
    records = [make_record(2, "b"), make_record(1, "ä")]
    path = store.write_merged(records)
    assert path == store.merged_path and path.name == "X.jsonl"
    assert path.read_bytes() == line(records[0]) + line(records[1])
    assert [p.name for p in path.parent.iterdir()] == ["X.jsonl"]


# ------------------------------------------------------------------------------------------------ atomic writes
def test_atomic_write_syncs_the_temp_file_renames_then_syncs_the_folder(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "run.json"
    spy = Spy(monkeypatch)
    atomic_write_bytes(target, b"new")
    tmp = str(tmp_path / "sub" / f".run.json.tmp{os.getpid()}")
    assert spy.calls == [("fsync", tmp), ("replace", (tmp, str(target))), ("fsync", str(tmp_path / "sub"))]
    assert target.read_bytes() == b"new" and sorted(p.name for p in target.parent.iterdir()) == ["run.json"]


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    target.write_bytes(b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as exc:
        atomic_write_bytes(target, b"new")
    assert exc.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["run.json"]


@pytest.mark.parametrize("own_name", [None, "/elsewhere/named.by.the.error"])
def test_a_failed_atomic_write_names_the_file_being_written(tmp_path, monkeypatch, own_name):
    """A failed write() names no file: the error then names the target (the CLI's one line says which file); an
    error that names its own file keeps it, with its errno and text."""
    target = tmp_path / "summary.xlsx"

    def full(fd):
        raise OSError(errno.EFBIG, "File too large", own_name) if own_name else OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as exc:
        atomic_write_bytes(target, b"x" * 10)
    assert (exc.value.errno, exc.value.strerror) == (errno.EFBIG, "File too large")
    assert exc.value.filename == (own_name or str(target))
    assert exc.value.__suppress_context__ == (own_name is None)   # re-raised from None only when renamed


def test_atomic_write_interrupted_at_the_rename_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "run.json"

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        f.atomic_write_text(target, "é")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    f.atomic_write_text(target, "é")
    assert target.read_bytes() == "é".encode()


def test_atomic_write_never_writes_through_a_planted_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"keep")
    run = tmp_path / "run"
    run.mkdir()
    (run / f".run.json.tmp{os.getpid()}").symlink_to(elsewhere)
    atomic_write_bytes(run / "run.json", b"new")
    assert elsewhere.read_bytes() == b"keep" and (run / "run.json").read_bytes() == b"new"
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]


def test_fsync_dir_of_a_missing_folder_is_quiet(tmp_path):
    f.fsync_dir(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------ links, lock
def test_part_file_that_is_a_link_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "target.jsonl"
    target.write_bytes(b"keep, no newline")
    store = PredictionStore(tmp_path / "run", "X")
    store.part_path(0).parent.mkdir(parents=True)
    store.part_path(0).symlink_to(target)
    with pytest.raises(SymlinkError, match=r"X.part0.jsonl: is a symlink \(to .*target.jsonl\)"):
        store.writer(0)
    with pytest.raises(SymlinkError):
        read_records(store.part_path(0))
    assert target.read_bytes() == b"keep, no newline"
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(SymlinkError, match="loop: is a symlink"):
        f.open_own(loop, os.O_RDONLY)
    long = tmp_path / "long"
    long.symlink_to("/" + "a" * 200)
    message = str(f.symlink_refusal(long))
    assert "(to /" + "a" * 56 + "..." + "a" * 57 + ")" in message
    assert "(to ?)" in str(f.symlink_refusal(tmp_path / "not-a-link"))
    with pytest.raises(FileNotFoundError):
        f.open_own(tmp_path / "no" / "such", os.O_RDONLY)


def test_lock_holds_the_pid_refuses_a_second_holder_and_is_released(tmp_path):
    run = tmp_path / "run"
    lock = RunLock(run).acquire()
    assert (run / ".lock").read_text() == f"{os.getpid()}\n"
    errors = []

    def second():                                    # flock locks belong to the open file: a second open conflicts
        try:
            RunLock(run).acquire()
        except RunLockedError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join()
    assert errors == [f"{run}: another run (pid {os.getpid()}) is writing this run folder; wait for it or pick "
                      "another --run-name"]
    lock.release()
    lock.release()                                   # twice: harmless
    assert (run / ".lock").read_bytes() == b""
    with RunLock(run):
        assert (run / ".lock").read_text() == f"{os.getpid()}\n"
    link = tmp_path / "link"
    link.symlink_to(run)
    with pytest.raises(SymlinkError):
        RunLock(link).acquire()


# ------------------------------------------------------------------------------------------------ edges
def test_files_are_created_in_missing_folders_with_mode_644(tmp_path):
    old = os.umask(0o022)
    try:
        with PartWriter(tmp_path / "a" / "b" / "X.part0.jsonl") as writer:
            writer.append([make_record(0, "a")])
        atomic_write_bytes(tmp_path / "c" / "d" / "run.json", b"{}")
        lock = RunLock(tmp_path / "e" / "f").acquire()
        lock.release()
    finally:
        os.umask(old)
    for path in (tmp_path / "a" / "b" / "X.part0.jsonl", tmp_path / "c" / "d" / "run.json",
                 tmp_path / "e" / "f" / ".lock"):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_a_failed_open_keeps_its_own_error(tmp_path, monkeypatch):
    """The cleanup after a failed atomic write must not replace the error (no temp file exists yet)."""
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "open", full)
    with pytest.raises(OSError) as exc:
        atomic_write_bytes(tmp_path / "run.json", b"x")
    assert exc.value.errno == errno.ENOSPC


def test_a_link_loop_in_a_parent_folder_is_a_symlink_error(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(SymlinkError, match="loop/x.jsonl: is a symlink"):
        f.open_own(loop / "x.jsonl", os.O_RDONLY)


def test_symlink_targets_up_to_120_characters_are_shown_whole(tmp_path):
    exact, over = tmp_path / "exact", tmp_path / "over"
    exact.symlink_to("/" + "b" * 119)
    over.symlink_to("/" + "b" * 120)
    assert f"(to /{'b' * 119});" in str(f.symlink_refusal(exact))
    assert str(f.symlink_refusal(over)).endswith(f"(to /{'b' * 56}...{'b' * 57}); a run folder's own files and folders "
                                                 "are never followed through links - remove the link, or use another "
                                                 "--run-name")


def test_warnings_name_the_file(tmp_path, caplog):
    path = tmp_path / "X.part0.jsonl"
    path.write_bytes(b"garbage\n" + line(make_record(0, "a")) + b"torn")
    with caplog.at_level(logging.WARNING):
        read_records(path)
        PartWriter(path).close()
    assert f"{path}: skipped 1 unreadable line(s)" in caplog.text
    assert f"{path}: dropping a torn last line (4 bytes) left by an interrupted run" in caplog.text


def test_torn_tail_scan_at_block_edges(tmp_path, monkeypatch):
    path = tmp_path / "X.part0.jsonl"
    path.write_bytes(b"\n")                                  # a clean one-byte file: nothing cut, nothing synced
    spy = Spy(monkeypatch)
    PartWriter(path).close()
    assert spy.calls == [] and path.read_bytes() == b"\n"
    path.write_bytes(b"\n" + b"x" * (1 << 16))               # the only newline is the first byte, a block away
    PartWriter(path).close()
    assert path.read_bytes() == b"\n"
    path.write_bytes(b"a\n" + b"x" * ((1 << 16) - 1))        # the newline opens the last block read
    PartWriter(path).close()
    assert path.read_bytes() == b"a\n"


def test_close_and_release_twice_touch_no_other_descriptor(tmp_path):
    writer = PartWriter(tmp_path / "X.part0.jsonl")
    writer.close()
    writer.close()
    RunLock(tmp_path / "never").release()                    # released before it was acquired
    lock = RunLock(tmp_path / "run").acquire()
    lock.release()
    lock.release()
    os.fstat(1)
    os.fstat(2)                                              # still open


def test_lock_message_with_an_empty_or_garbled_pid(tmp_path):
    run = tmp_path / "run"
    lock = RunLock(run).acquire()
    errors = []

    def second():
        try:
            RunLock(run).acquire()
        except RunLockedError as exc:
            errors.append(str(exc))

    for content in (b"", b"\xff\xfe 12"):
        (run / ".lock").write_bytes(content)                 # the holder keeps its flock
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    lock.release()
    assert errors[0].startswith(f"{run}: another run (pid ?) is writing")
    assert errors[1].startswith(f"{run}: another run (pid \ufffd\ufffd 12) is writing")
