"""The one key a dataset row is known by: its ``index`` cell as a JSON value, and that value as text.

Prediction records, score sheets and the statistics all match rows on :func:`index_key`, so ``3``, ``3.0`` and
numpy's ``int64(3)`` are one row everywhere.
"""
from __future__ import annotations

import math


def json_index(value):
    """A dataset index as a JSON value: ints stay ints (numpy ints too), everything else becomes a string."""
    if isinstance(value, bool):
        return str(value)
    try:
        import numpy as np

        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            value = float(value)
    except ImportError:  # pragma: no cover - numpy always ships with pandas
        pass
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return str(value)


def index_key(value) -> str:
    """The key records and dataset rows are matched on: ``str`` of the JSON index (``3`` and ``3.0`` -> ``'3'``)."""
    return str(json_index(value))
