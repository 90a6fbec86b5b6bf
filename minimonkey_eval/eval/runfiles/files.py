"""Writing a run folder's files safely: atomically (readers see the old or the new file, never half of one) and
never through a symlink (a link planted in a run folder gets nothing elsewhere truncated, appended to or read).

Used by the prediction store, the run record and the sweep's state file. Pure stdlib.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from minimonkey_eval.errors import UserFacingError


class SymlinkError(UserFacingError):
    """A file or folder of a run folder is a symlink (never followed)."""


def symlink_refusal(path: Path) -> SymlinkError:
    """The one line for a run-folder path that is a symlink (a loop included), naming it and where it points."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    target = target if len(target) <= 120 else f"{target[:57]}...{target[-57:]}"
    return SymlinkError(f"{path}: is a symlink (to {target}); a run folder's own files and folders are never "
                        "followed through links - remove the link, or use another --run-name")


def open_own(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` of a run folder's own file without following a symlink: a link there (to a file elsewhere, or a
    loop) is a :class:`SymlinkError`, and nothing it points to is opened."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise symlink_refusal(Path(path)) from None
        raise


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename over ``path``: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if os.path.islink(tmp):   # a stale link where the temporary file goes: removed, never written through
        tmp.unlink()
    try:
        with os.fdopen(open_own(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:   # disk full, interrupted: no .tmp file left behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # a failed write() names no file: name the one being written (the CLI's line then says which)
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
