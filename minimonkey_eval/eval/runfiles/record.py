"""The run record: one typed :class:`RunRecord` per run folder, with the one reader and the one writer of its file.

The record says what made a run folder's predictions (its identity: model, checkpoint hash, tiles, SCM, answer
length, dtype, attention), how and where it ran (versions, git commit, argv, batch size, world size) and what it
produced (datasets, per-dataset tile settings, results and timings). :func:`read_run_record` parses and checks the
file (a file of the wrong shape is one :class:`RunRecordError` naming the file and the field);
:func:`write_run_record` writes it atomically. ``SCHEMA_VERSION`` is written with every record; a file without it
is version 1 (records written before the field existed have the same shape), a file of a newer version is refused.
Keys this version does not know are kept (``extra``) and written back unchanged.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.runfiles.files import atomic_write_text
from minimonkey_eval.eval.runfiles.layout import RunLayout

SCHEMA_VERSION = 1
# The fields that decide the predictions: a resumed run must agree on all of them (and on ``tiles`` per dataset).
IDENTITY_FIELDS = ("model", "msac", "checkpoint_sha256", "tile_profile", "tiles_override", "scm", "scm_ratio",
                   "scm_fix_off_by_one", "max_new_tokens", "demo", "dtype", "attn")
# Identity fields added after the first records: None in an old record means "not recorded", not a difference.
_NOT_RECORDED_IN_OLD = ("dtype", "attn")
# Written only when set (an engine run has no VLMEvalKit wrapper block, a real run no demo note).
_OPTIONAL = ("demo_note", "vlmeval", "prediction_prefix", "params_b", "params_source")
_FIX = "fix it or use --overwrite"


class RunRecordError(UserFacingError, ValueError):
    """The run record file is unreadable or of the wrong shape (one line naming the file and the field)."""


@dataclass
class RunRecord:
    schema_version: int = SCHEMA_VERSION
    run_name: str | None = None
    label: str | None = None
    # ---- identity (IDENTITY_FIELDS) -------------------------------------------------------------------------------
    model: str | None = None
    msac: bool | None = None
    checkpoint_sha256: str | None = None
    tile_profile: str | None = None            # None: a VLMEvalKit wrapper decides its tiles
    tiles_override: str | None = None
    scm: bool | None = None
    scm_ratio: float | None = None
    scm_fix_off_by_one: bool = False           # records from before the field existed meant False
    max_new_tokens: int | None = None
    demo: bool | None = None
    dtype: str | None = None
    attn: str | None = None
    # ---- how and where it ran ------------------------------------------------------------------------------------
    tile_model: str | None = None              # the tile table's family (MSAC on InternVL2: minimonkey)
    model_path: str | None = None
    checkpoint_files: dict = field(default_factory=dict)
    device: str | None = None
    git_commit: str | None = None
    versions: dict = field(default_factory=dict)
    argv: list = field(default_factory=list)
    data_root: str | None = None
    judge: object = None
    batch_size: int | str | None = None
    limit: int | None = None
    normalize_on_device: bool = False
    wrapper: dict | None = None                # the authors' setting: their file and the behaviours reproduced
    world_size: int | None = None
    reuse: bool | None = None                  # images computed once (equal answers: not part of the identity)
    # ---- what it produced ----------------------------------------------------------------------------------------
    datasets: list = field(default_factory=list)
    tiles: dict = field(default_factory=dict)      # dataset -> tile setting record (part of the identity)
    results: dict = field(default_factory=dict)    # dataset -> rows, failed, headline, extraction, notes, reuse...
    timings: dict = field(default_factory=dict)    # first_started, started, finished, wall_s, datasets: {...}
    # ---- optional blocks (_OPTIONAL) -----------------------------------------------------------------------------
    demo_note: str | None = None
    vlmeval: dict | None = None                # a vlmeval:NAME run: the wrapper's name, class, batch interface
    prediction_prefix: str | None = None       # VLMEvalKit's files are {prefix}_{DATASET}.xlsx (None: the model)
    params_b: float | None = None
    params_source: str | None = None
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as they were

    # ---- views ---------------------------------------------------------------------------------------------------
    def identity(self) -> dict:
        return {k: getattr(self, k) for k in IDENTITY_FIELDS}

    @property
    def prefix(self) -> str:
        """The stem of VLMEvalKit's files in the run folder: ``prediction_prefix``, else the model name."""
        prefix = self.prediction_prefix
        return prefix if isinstance(prefix, str) and prefix and "/" not in prefix else str(self.model or "")

    def differences(self, mine: "RunRecord", tiles: dict[str, dict]) -> list[str]:
        """Why this (existing) record's predictions are not those of a run with ``mine``'s identity and the tile
        settings ``tiles`` (dataset -> tile record) would make (empty: that run may resume it)."""
        diffs = [f"{k}={getattr(self, k)!r} (this run: {getattr(mine, k)!r})" for k in IDENTITY_FIELDS
                 if getattr(self, k) != getattr(mine, k)
                 and not (k in _NOT_RECORDED_IN_OLD and getattr(self, k) is None)]
        for ds, record in tiles.items():
            if ds in self.tiles and self.tiles[ds] != record:
                diffs.append(f"tiles[{ds}]={self.tiles[ds]!r} (this run: {record!r})")
        return diffs

    def is_unstarted(self, layout: RunLayout) -> bool:
        """A record left by a run that stopped before its first prediction: no results and no prediction line."""
        return not self.results and not self.datasets and not layout.has_predictions()

    def resumed_by(self, fresh: "RunRecord") -> "RunRecord":
        """``fresh`` (this invocation's settings) carrying over what this record accumulated: datasets, tiles,
        results, timings, the device and parameter count recorded once the model was loaded, unknown keys."""
        timings = {**self.timings, "started": fresh.timings.get("started"), "finished": None}
        timings.setdefault("first_started", fresh.timings.get("first_started"))
        timings.setdefault("datasets", {})
        return dataclasses.replace(
            fresh, datasets=list(self.datasets), tiles={**self.tiles, **fresh.tiles}, results=dict(self.results),
            timings=timings, device=fresh.device or self.device,
            params_b=fresh.params_b if fresh.params_b is not None else self.params_b,
            params_source=fresh.params_source or self.params_source, extra={**self.extra, **fresh.extra})

    def update(self, fields: dict) -> None:
        """Set the named fields (a name the record does not know goes to ``extra``)."""
        names = _field_names()
        for key, value in fields.items():
            if key in names:
                setattr(self, key, value)
            else:
                self.extra[key] = value

    # ---- (de)serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extra" or (f.name in _OPTIONAL and getattr(self, f.name) is None):
                continue
            out[f.name] = getattr(self, f.name)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, obj, path: Path | str = "run record") -> "RunRecord":
        """The record a parsed file holds, its shape checked (:class:`RunRecordError` naming ``path`` and the field)."""
        check_shape(obj, path)
        names = _field_names()
        known = {k: v for k, v in obj.items() if k in names}
        known.setdefault("schema_version", 1)
        return cls(**known, extra={k: v for k, v in obj.items() if k not in names})


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(RunRecord)} - {"extra"}


# --------------------------------------------------------------------------------------------------- shape
_SHAPES = {"datasets": list, "tiles": dict, "results": dict, "timings": dict, "checkpoint_files": dict}


def check_shape(obj, path) -> None:
    """A run record must be an object whose bookkeeping fields have the types the runner writes."""
    if not isinstance(obj, dict):
        raise RunRecordError(f"{path}: holds a JSON {type(obj).__name__}, not a run record object; {_FIX}")
    version = obj.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise RunRecordError(f"{path}: 'schema_version' is {type(version).__name__}, expected int; {_FIX}")
    if version > SCHEMA_VERSION:
        raise RunRecordError(f"{path}: 'schema_version' is {version}, newer than this minimonkey-eval reads "
                             f"({SCHEMA_VERSION}); update minimonkey-eval or use --overwrite")
    for key, kind in _SHAPES.items():
        if key in obj and not isinstance(obj[key], kind):
            raise RunRecordError(f"{path}: '{key}' is {type(obj[key]).__name__}, expected {kind.__name__}; {_FIX}")
    timings = obj.get("timings") or {}
    if "datasets" in timings and not isinstance(timings["datasets"], dict):
        raise RunRecordError(f"{path}: 'timings.datasets' is {type(timings['datasets']).__name__}, expected dict; "
                             f"{_FIX}")
    for name, value in (obj.get("tiles") or {}).items():
        if not isinstance(value, dict):
            raise RunRecordError(f"{path}: 'tiles.{name}' is {type(value).__name__}, expected dict; {_FIX}")
    if not all(isinstance(d, str) for d in obj.get("datasets") or []):
        raise RunRecordError(f"{path}: 'datasets' must list dataset names; {_FIX}")


# --------------------------------------------------------------------------------------------------- the file
def read_run_record(run_dir: str | Path, missing_ok: bool = False) -> RunRecord | None:
    """The run record of the run folder ``run_dir`` (``missing_ok``: None when the folder has none)."""
    path = RunLayout(Path(run_dir)).run_json
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return None
        raise RunRecordError(f"{path}: not found; {Path(run_dir)} is not a run folder") from None
    except (OSError, ValueError) as exc:
        raise RunRecordError(f"{path}: unreadable ({exc}); {_FIX}") from None
    return RunRecord.from_dict(obj, path)


def write_run_record(run_dir: str | Path, record: RunRecord) -> Path:
    """Write ``record`` into the run folder ``run_dir`` (atomically: readers see the old or the new record)."""
    path = RunLayout(Path(run_dir)).run_json
    atomic_write_text(path, json.dumps(record.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")
    return path
