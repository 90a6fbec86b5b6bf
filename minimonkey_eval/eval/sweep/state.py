"""The sweep's state file ``sweep.json``, read without the sweep runner: one row per grid point x dataset.

``read_state(folder)`` returns ``{"rows": {"<run_name>/<DATASET>": row}}`` (headline, CI, costs, tiles, SCM, ...;
``grid.py`` appends the rows, atomically); ``nearest_point`` picks the row whose headline is closest to a
published score (the report's mismatch section) and ``label`` names a point by its tiles and SCM ratio (charts,
report). Pure reading: no torch, no runner, no vlmeval, so the report and the sweep's charts import this module
and never ``grid.py``.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from minimonkey_eval.datasets.registry import get_benchmark
from minimonkey_eval.errors import UserFacingError

STATE = "sweep.json"


class SweepError(UserFacingError):
    """Bad sweep options or an unreadable sweep folder (one line)."""


def read_state(out: str | Path) -> dict:
    """The state of the sweep folder ``out`` (``{"rows": {}}`` when it has none yet)."""
    path = Path(out) / STATE
    if not path.exists():
        return {"rows": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path}: unreadable ({exc}); delete it to recompute the table from scratch") from None
    state.setdefault("rows", {})
    return state


def nearest_point(sweep_dir: str | Path, dataset: str, published: float, model: str | None = None) -> dict | None:
    """The sweep row (``sweep.json``) on ``dataset`` whose headline is closest to ``published`` (``model``: only that
    model's rows); None when the folder has no sweep, no scored row or ``published`` is NaN."""
    if published is None or math.isnan(published) or not (Path(sweep_dir) / STATE).exists():
        return None
    name = get_benchmark(dataset).vlmeval_name
    best = None
    for row in read_state(Path(sweep_dir))["rows"].values():
        head = row.get("headline")
        if row.get("dataset") != name or head is None or (model and row.get("model") != model):
            continue
        if isinstance(head, float) and math.isnan(head):
            continue
        if best is None or abs(head - published) < abs(best["headline"] - published):
            best = row
    return best


def label(row) -> str:
    """Short point label for charts: tiles (profile or override) and SCM."""
    scm = "" if row["scm"] == "off" else f" SCM {row['scm']}"
    return f"{row['tiles']}{scm}"


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """``text`` usable as a file name (runs of other characters become '_')."""
    return _SAFE.sub("_", text)
