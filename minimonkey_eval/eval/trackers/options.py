"""Tracker options: the names ``--log-to`` accepts, where each tracker writes, the one-line error. Nothing heavy."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from minimonkey_eval.errors import UserFacingError

TRACKERS = ("wandb", "mlflow")
INSTALL = 'pip install ".[trackers]"'
DEFAULT_PROJECT = "minimonkey-eval"       # W&B project and MLflow experiment


class TrackerError(UserFacingError):
    """A tracker is missing, misconfigured or refused what was logged (one line)."""


def parse_log_to(values: Iterable[str] | None) -> list[str]:
    """``--log-to`` values (repeated and/or comma lists) -> the trackers, in order, once each."""
    out: list[str] = []
    for value in values or ():
        for name in str(value).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in TRACKERS:
                raise TrackerError(f"unknown tracker {name!r}; choose from {', '.join(TRACKERS)}")
            if name not in out:
                out.append(name)
    return out


@dataclass
class TrackerOptions:
    """Where to log: the trackers and each one's settings (None: the library's environment variable or default)."""
    log_to: Sequence[str] = ()
    project: str = DEFAULT_PROJECT        # W&B project; MLflow experiment
    wandb_entity: str | None = None
    wandb_mode: str | None = None         # online | offline | None: $WANDB_MODE, else online
    wandb_dir: str | None = None          # None: $WANDB_DIR, else the current directory
    mlflow_uri: str | None = None         # None: $MLFLOW_TRACKING_URI, else {default_dir}/mlruns

    def mlflow_store(self, default_dir: str | Path) -> str:
        """The tracking URI: --mlflow-uri, $MLFLOW_TRACKING_URI, else a file store ``mlruns`` in ``default_dir``;
        a plain folder becomes a ``file://`` URI."""
        uri = self.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or str(Path(default_dir) / "mlruns")
        if "://" not in uri and not uri.startswith(("file:", "databricks", "sqlite:")):
            uri = Path(uri).expanduser().resolve().as_uri()
        return uri


def first_line(exc: BaseException) -> str:
    """An exception's first line (at most 300 characters; its type when it has no text): a tracker's own errors."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
