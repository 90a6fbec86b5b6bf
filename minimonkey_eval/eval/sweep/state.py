"""The sweep's state file ``sweep.json``, read without the sweep runner: one row per grid point x dataset.

``read_state(folder)`` returns ``{"rows": {"<run_name>/<DATASET>": row}}`` (headline, CI, costs, tiles, SCM, ...;
``grid.py`` appends the rows, atomically), typed (:class:`SweepState`): any other shape is one :class:`SweepError`
line naming the file and the field; ``nearest_point`` picks the row whose headline is closest to a
published score (the report's mismatch section) and ``label`` names a point by its tiles and SCM ratio (charts,
report). Pure reading: no torch, no runner, no vlmeval, so the report and the sweep's charts import this module
and never ``grid.py``.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from minimonkey_eval.datasets.registry import get_benchmark
from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.models.side_files import read_side_file

STATE = "sweep.json"
_FIX = "delete it to recompute the table from scratch"


class SweepError(UserFacingError):
    """Bad sweep options or an unreadable sweep folder (one line)."""


Number = Optional[Union[StrictFloat, StrictInt]]
Text = Optional[StrictStr]


class SweepRow(BaseModel):
    """One grid point x dataset as ``grid.point_row`` writes it (NaN is written as null); unknown keys kept."""

    model_config = ConfigDict(extra="allow")
    model: StrictStr
    dataset: StrictStr
    tiles: StrictStr
    scm: StrictStr
    label: Text = None
    column: Text = None
    run_name: Text = None
    rows: Optional[StrictInt] = None
    failed: Optional[StrictInt] = None
    headline: Number = None
    ci_lo: Number = None
    ci_hi: Number = None
    ci_note: Text = None
    visual_tokens: Number = None
    prompt_tokens: Number = None
    generated_tokens: Number = None
    samples_per_s: Number = None
    latency_s: Number = None
    peak_mem_gb: Number = None
    peak_mem_kind: Text = None
    card_setting: Optional[StrictBool] = None
    published: Number = None
    limit: Optional[StrictInt] = None
    finished: Text = None
    setting: Optional[dict] = None


class SweepState(BaseModel):
    model_config = ConfigDict(extra="allow")
    rows: dict[StrictStr, SweepRow] = Field(default_factory=dict)


def read_state(out: str | Path) -> dict:
    """The state of the sweep folder ``out`` (``{"rows": {}}`` when it has none yet), read through the typed reader
    of side files (``models.side_files.read_side_file`` with :class:`SweepState`): a file of any other shape is one
    :class:`SweepError` line naming the file and the field."""
    path = Path(out) / STATE
    if not path.exists():
        return {"rows": {}}
    return read_side_file(path, SweepState, SweepError, fix=_FIX).model_dump()


def nearest_point(sweep_dir: str | Path, dataset: str, published: float, model: str | None = None,
                  state: dict | None = None) -> dict | None:
    """The sweep row (``sweep.json``) on ``dataset`` whose headline is closest to ``published`` (``model``: only that
    model's rows); None when the folder has no sweep, no scored row or ``published`` is NaN. ``state``: the folder's
    state when already read."""
    if published is None or math.isnan(published):
        return None
    if state is None and not (Path(sweep_dir) / STATE).exists():
        return None
    name = get_benchmark(dataset).vlmeval_name
    best = None
    for row in (state if state is not None else read_state(Path(sweep_dir)))["rows"].values():
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
