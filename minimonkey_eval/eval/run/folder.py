"""The run folder on disk: :class:`RunFolder` locks it, opens its run record and saves it; the run's provenance.

Opening (rank 0) takes the folder's lock, then checks the existing run record against this run's: a folder whose
record disagrees on model, checkpoint, tiles, SCM or max_new_tokens is refused (one line) unless ``--overwrite``,
which empties it first; a record left by a run that stopped before its first prediction is replaced; predictions
without a record are refused. The file names are ``layout.RunLayout``'s, the record is ``record.RunRecord``;
``git_commit`` / ``versions`` / ``utc_now`` are what the runner writes into a fresh record.
"""
from __future__ import annotations

import logging
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

from minimonkey_eval.eval.run.guards import check_run_folder
from minimonkey_eval.eval.run.options import RunError
from minimonkey_eval.eval.run.store import RunLock
from minimonkey_eval.eval.runfiles.layout import LOCK_NAME, RUN_JSON, RunLayout
from minimonkey_eval.eval.runfiles.record import RunRecord, read_run_record, write_run_record
from minimonkey_eval.preflight import installed_version

logger = logging.getLogger(__name__)


class RunFolder:
    """One run folder: its lock, and the run record as this run opens, updates and saves it."""

    def __init__(self, layout: RunLayout, overwrite: bool = False):
        self.layout = layout
        self.overwrite = overwrite
        self._lock: RunLock | None = None

    @property
    def run_dir(self) -> Path:
        return self.layout.run_dir

    def open(self, fresh: RunRecord, tiles: dict[str, dict]) -> RunRecord:
        """Lock the folder, check or reset its record, write the starting record and return it. ``fresh``: this
        invocation's record; ``tiles``: this run's tile record per dataset (checked against the existing record)."""
        try:
            self.run_dir.parent.mkdir(parents=True, exist_ok=True)
            self._lock = RunLock(self.run_dir).acquire()
        except OSError as exc:
            raise RunError(f"{self.run_dir}: cannot write the run folder ({exc.strerror or exc}); "
                           "check --work-dir") from None
        check_run_folder(self.layout)
        old = read_run_record(self.run_dir, missing_ok=True) if not self.overwrite else None
        if old is not None and old.is_unstarted(self.layout) and old.differences(fresh, tiles):
            logger.warning("%s: %s of a run that stopped before its first prediction; starting afresh",
                           self.run_dir, RUN_JSON)
            old = None
        if old is None and not self.overwrite and self.layout.has_predictions():
            raise RunError(f"{self.run_dir} holds predictions but no {RUN_JSON}, so which model and tiles made them "
                           "is unknown; use another --run-name, or --overwrite to discard them")
        if old is not None:
            why = "; ".join(old.differences(fresh, tiles))
            if why:
                raise RunError(f"{self.run_dir} holds a different run ({why}); use another --run-name, "
                               "or --overwrite to discard it")
            record = old.resumed_by(fresh)
        else:
            if self.overwrite and any(p.name != LOCK_NAME for p in self.run_dir.iterdir()):
                logger.warning("--overwrite: emptying %s", self.run_dir)
                self._clear()
            record = fresh
        self.save(record)
        return record

    def save(self, record: RunRecord) -> None:
        write_run_record(self.run_dir, record)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _clear(self) -> None:
        for child in self.run_dir.iterdir():
            if child.name == LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


# --------------------------------------------------------------------------------------------------- provenance
def git_commit(start: Path | None = None) -> str | None:
    """HEAD of the git checkout holding this package, read from ``.git`` (no git process)."""
    here = Path(start or __file__).resolve()
    for parent in [here, *here.parents]:
        git = parent / ".git"
        if git.is_file():  # worktree / submodule: 'gitdir: <path>'
            text = git.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                git = (parent / text[len("gitdir:"):].strip()).resolve()
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text(encoding="utf-8").strip()
            if not head.startswith("ref:"):
                return head or None
            ref = head[4:].strip()
            common = git
            if (git / "commondir").is_file():
                common = (git / (git / "commondir").read_text().strip()).resolve()
            for base in (git, common):
                if (base / ref).is_file():
                    return (base / ref).read_text(encoding="utf-8").strip()
            for base in (git, common):
                packed = base / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text(encoding="utf-8").splitlines():
                        parts = line.split()
                        if len(parts) == 2 and parts[1] == ref:
                            return parts[0]
        except OSError:
            return None
        return None
    return None


def versions() -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    try:
        import torch

        out["torch"] = torch.__version__
        out["cuda"] = torch.version.cuda
    except ImportError:  # pragma: no cover
        out["torch"] = None
    out["transformers"] = installed_version("transformers")
    out["vlmeval"] = installed_version("ms-vlmeval", "vlmeval")
    from minimonkey_eval import __version__

    out["minimonkey_eval"] = __version__
    return out


def utc_now() -> str:
    """Now, as the run record's timings write it (ISO 8601, UTC, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
