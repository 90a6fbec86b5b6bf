"""Append-only prediction store and the run-folder lock: nothing lost, nothing written twice.

One JSON line per sample, ``{"index": ..., "prediction": "...", "failed": false, "reason": "", ...}``, in
``{run_dir}/predictions/{DATASET}.part{R}.jsonl`` (``layout.RunLayout.part``: one part file per torchrun rank; a
single process is rank 0). Durability rules:

* a batch of records is written with one ``os.write`` on an ``O_APPEND`` descriptor, then ``fsync``'d;
* a line that does not parse (the torn last line of a SIGKILLed writer) is ignored on reload, and the writer
  cuts such a torn tail off its own part file before appending, so it never glues onto the next record;
* readers take the union of every part file (any world size), so a run resumed with another number of ranks
  skips what any earlier rank finished. When an index appears twice (only possible across crashed runs with
  different world sizes, or a retried failure), the first successful record wins; a failed one stands only until
  a later record for the same index (its retry) replaces it.

``RunLock`` is an exclusive ``fcntl.flock`` on ``{run_dir}/.lock`` (``RunLayout.lock``): a second run on the same
folder gets a one-line error instead of interleaving its writes. The kernel drops the lock when the process dies.

Symlinks are never followed: the lock, the part files and the temporary files of atomic writes are opened with
``O_NOFOLLOW`` (``runfiles.files.open_own``), so a link planted in a run folder can never get a file elsewhere
truncated, appended to or read; it is one ``runfiles.files.SymlinkError`` line naming it (``guards.check_run_folder``
checks the whole folder with ``lstat`` before a run writes anything).

Pure stdlib; no torch, no vlmeval.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Iterable

from minimonkey_eval.datasets.indexes import index_key, json_index
from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.runfiles.files import atomic_write_text, open_own, symlink_refusal
from minimonkey_eval.eval.runfiles.layout import RunLayout

logger = logging.getLogger(__name__)


class RunLockedError(UserFacingError):
    """Another process holds the run folder's lock."""


# ------------------------------------------------------------------------------------------------ records
def make_record(index, prediction: str | None, failed: bool = False, reason: str = "", **extra) -> dict:
    record = {"index": json_index(index), "prediction": "" if prediction is None else str(prediction),
              "failed": bool(failed), "reason": str(reason or "")}
    record.update(extra)
    return record


def _valid(record) -> bool:
    return isinstance(record, dict) and "index" in record and "prediction" in record and \
        isinstance(record.get("prediction"), str)


def read_records(path: Path) -> list[dict]:
    """Every well-formed record of one part file, in file order; torn or corrupt lines are skipped."""
    try:
        fd = open_own(Path(path), os.O_RDONLY)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "rb") as f:
        raw = f.read()
    records, bad = [], 0
    lines = raw.split(b"\n")
    # A last line without its newline is an interrupted append (expected after SIGKILL): ignored, even when it
    # happens to parse, because the writer cuts it off before its next append (PartWriter._cut_torn_tail).
    for line in lines[:-1]:
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            record = None
        if not _valid(record):
            bad += 1
            continue
        record.setdefault("failed", False)
        record.setdefault("reason", "")
        records.append(record)
    if bad:
        logger.warning("%s: skipped %d unreadable line(s)", path, bad)
    return records


def merge_records(parts: Iterable[Iterable[dict]]) -> dict[str, dict]:
    """index key -> record over several part files: the first successful record wins; a failed record only
    stands until a later record (a retry) replaces it."""
    merged: dict[str, dict] = {}
    for records in parts:
        for record in records:
            key = index_key(record["index"])
            old = merged.get(key)
            if old is None or old.get("failed"):
                merged[key] = record
    return merged


# ------------------------------------------------------------------------------------------------ store
class PredictionStore:
    """The part files of one dataset in one run folder."""

    def __init__(self, run_dir: Path, dataset: str):
        self.layout = RunLayout(Path(run_dir))
        self.dataset = dataset

    def part_path(self, rank: int) -> Path:
        return self.layout.part(self.dataset, rank)

    @property
    def merged_path(self) -> Path:
        return self.layout.merged(self.dataset)

    def part_paths(self) -> list[Path]:
        return self.layout.part_paths(self.dataset)

    def load(self) -> dict[str, dict]:
        """index key -> record, over every part file."""
        return merge_records(read_records(p) for p in self.part_paths())

    def writer(self, rank: int) -> "PartWriter":
        return PartWriter(self.part_path(rank))

    def write_merged(self, records: list[dict]) -> Path:
        """The merged predictions (already in dataset order), written atomically."""
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        atomic_write_text(self.merged_path, text)
        return self.merged_path


class PartWriter:
    """Appends batches of records to one part file: one write + fsync per batch."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = open_own(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        self._cut_torn_tail()

    def _cut_torn_tail(self) -> None:
        """Drop a last line that lacks its newline (an append killed half-way) so the next write starts clean."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        tail_start = max(0, size - 1)
        if os.pread(self._fd, 1, tail_start) == b"\n":
            return
        block, pos = 1 << 16, size
        keep = 0
        while pos > 0:
            lo = max(0, pos - block)
            chunk = os.pread(self._fd, pos - lo, lo)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = lo + nl + 1
                break
            pos = lo
        logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run", self.path, size - keep)
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ lock
class RunLock:
    """Exclusive, non-blocking ``flock`` on ``{run_dir}/.lock`` (holds the owner's pid for the error message)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = RunLayout(self.run_dir).lock
        self._fd = -1

    def acquire(self) -> "RunLock":
        if self.run_dir.is_symlink():
            raise symlink_refusal(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = open_own(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise RunLockedError(f"{self.run_dir}: another run (pid {owner}) is writing this run folder; "
                                 "wait for it or pick another --run-name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd >= 0:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
