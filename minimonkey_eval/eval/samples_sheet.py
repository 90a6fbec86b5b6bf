"""The per-sample sheet ``{DATASET}_samples.csv``: its columns and its one typed reader.

The runner writes it (``run/writers.py``: one row per dataset row); the report (``report/collect.py``,
``report/mismatch.py``), ``compare`` and the resampling units (``stats/units.py``) read it through
:func:`read_samples_csv` only. Any other shape -- a 0-byte file, a file that is not CSV or not UTF-8, a missing
column, an empty index, a score that is not a number, a ``failed`` cell that is not a boolean -- is one
:class:`SamplesError` line naming the file, the column and the row. Pure pandas; no torch, no runner.
"""
from __future__ import annotations

import io
import math
from functools import lru_cache
from pathlib import Path

import pandas as pd

from minimonkey_eval.errors import UserFacingError

SAMPLE_COLUMNS = ("index", "question", "answer", "prediction", "score", "image_path", "failed", "reason")
TRUE, FALSE = ("true", "1", "yes", "1.0"), ("false", "0", "no", "0.0", "")
_FIX = "rerun the same `minimonkey-eval run` command to write it again"


class SamplesError(UserFacingError, ValueError):
    """A per-sample sheet of another shape (one line naming the file and the column). A ``ValueError`` too, so the
    report treats it like any unreadable run folder: one warning, the folder skipped."""


def read_samples_csv(path: str | Path) -> pd.DataFrame:
    """The sheet at ``path``: every column as text, except ``score`` (float, NaN where empty) and ``failed`` (bool).
    Read once per file version (cached on path, size and modification time; each call gets its own copy)."""
    path = Path(path)
    st = path.stat()
    return _read_cached(str(path), st.st_mtime_ns, st.st_size).copy()


@lru_cache(maxsize=64)
def _read_cached(name: str, mtime_ns: int, size: int) -> pd.DataFrame:
    path = Path(name)
    raw = path.read_bytes()
    if not raw.strip():
        raise SamplesError(f"{path}: empty file ({len(raw)} bytes), not a per-sample sheet; {_FIX}")
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise SamplesError(f"{path}: not UTF-8 text; {_FIX}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise SamplesError(f"{path}: not a CSV sheet ({' '.join(str(exc).split())[:120]}); {_FIX}") from None
    names = [str(c) for c in df.columns]
    missing = [c for c in SAMPLE_COLUMNS if c not in names]
    if missing:
        raise SamplesError(f"{path}: column {missing[0]!r} missing (a per-sample sheet has the columns "
                           f"{', '.join(SAMPLE_COLUMNS)}); {_FIX}")
    if len(set(names)) != len(names):
        twice = next(c for c in names if names.count(c) > 1)
        raise SamplesError(f"{path}: column {twice!r} appears twice; {_FIX}")
    for row, value in enumerate(df["index"], start=1):
        if not value.strip():
            raise SamplesError(f"{path}: column 'index', row {row}: empty; {_FIX}")
    df["score"] = [_score(path, row, v) for row, v in enumerate(df["score"], start=1)]
    df["score"] = df["score"].astype(float)
    df["failed"] = [_flag(path, row, v) for row, v in enumerate(df["failed"], start=1)]
    return df


def _score(path: Path, row: int, text: str) -> float:
    if not text.strip():
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    else:
        if math.isfinite(value):
            return value
    raise SamplesError(f"{path}: column 'score', row {row}: {_short(text)} is not a finite number; {_FIX}")


def _flag(path: Path, row: int, text: str) -> bool:
    low = text.strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise SamplesError(f"{path}: column 'failed', row {row}: {_short(text)} is not True/False; {_FIX}")


def _short(text: str) -> str:
    shown = ascii(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."
