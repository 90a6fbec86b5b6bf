"""Property tests (hypothesis) over the tilers and the prompt builders (kinds 41+ of tests/eval/run/test_faults.py).

* tilers: any image size 1..20000 x 1..20000 gives the tile count its grid implies; MSAC's first_scale_tiles is the
  first grid's area and its second grid never divides the first when such a candidate exists; invalid ranges are a
  ValueError. A small ``image_size`` (28) keeps it fast.
* prompts: any row shape (missing hint, NaN options / hint, unicode, empty or missing question, numbers) gives a
  string or a ValueError, never an unrelated exception.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from minimonkey_eval.eval.backends.prompts import build_question, build_text
from minimonkey_eval.models import dynamic_tiling, msac_tiling
from minimonkey_eval.models.tiling import candidate_grids, closest_grid, second_scale_grids

S = 28
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
sizes = st.tuples(st.integers(1, 20000), st.integers(1, 20000))
ranges = st.integers(1, 8).flatmap(lambda lo: st.tuples(st.just(lo), st.integers(lo, 12)))


def _img(w, h):
    # the grid depends only on the size: a tiny image resized lazily would change it, so draw the real size
    # but cap the pixel work: Image.new is cheap for 1-bit-like fills
    return Image.new("RGB", (w, h))


@FAST
@given(sizes, ranges)
def test_closest_grid_in_candidates(size, rng):
    grids = candidate_grids(*rng)
    grid = closest_grid(*size, grids, S)
    assert grid in grids and rng[0] <= grid[0] * grid[1] <= rng[1]


@settings(max_examples=25, deadline=None)
@given(st.tuples(st.integers(1, 3000), st.integers(1, 3000)), ranges)
def test_dynamic_tile_count(size, rng):
    t = dynamic_tiling(_img(*size), max_num=rng[1], min_num=rng[0], image_size=S)
    n = t.grid[0] * t.grid[1]
    assert t.pixel_values.shape == (n + (n > 1), 3, S, S) and t.first_scale_tiles == n + (n > 1)


@settings(max_examples=25, deadline=None)
@given(st.tuples(st.integers(1, 3000), st.integers(1, 3000)), ranges, ranges)
def test_msac_tile_count(size, r1, r2):
    t = msac_tiling(_img(*size), r1[0], r1[1], r2[0], r2[1], image_size=S)
    g1, g2 = t.grid, t.grid2
    n1, n2 = g1[0] * g1[1], g2[0] * g2[1]
    # official order s1[:-1] + s2[:-1] + s1[-1:]: a one-tile scale has no thumbnail, so its [:-1] drops it
    s1 = n1 + (n1 > 1)
    s2 = n2 + (n2 > 1)
    assert t.pixel_values.shape[0] == (s1 - 1) + (s2 - 1) + 1
    assert t.first_scale_tiles == n1
    if second_scale_grids(r2[0], r2[1], g1):
        assert g1[0] % g2[0] or g1[1] % g2[1]


@FAST
@given(sizes, st.integers(-3, 3), st.integers(-3, 3))
def test_invalid_ranges_are_value_errors(size, lo, hi):
    if 1 <= lo <= hi:
        return
    with pytest.raises(ValueError, match="invalid tile range"):
        dynamic_tiling(_img(1, 1), max_num=hi, min_num=lo, image_size=S)
    with pytest.raises(ValueError, match="invalid tile range"):
        msac_tiling(_img(1, 1), lo, hi, 1, 2, image_size=S)


cell = st.one_of(st.none(), st.just(math.nan), st.text(max_size=30), st.integers(-5, 10**6), st.floats(allow_nan=True))
rows = st.fixed_dictionaries({}, optional={"question": cell, "hint": cell, "A": cell, "B": cell, "C": cell,
                                           "D": cell})


@settings(max_examples=200, deadline=None)
@given(rows, st.sampled_from(["MiniMonkey", "InternVL2-2B"]),
       st.sampled_from(["MME", "AI2D_TEST", "OCRBench", "MathVista_MINI", "POPE", "HallusionBench", None]),
       st.integers(0, 3))
def test_prompt_builders_string_or_value_error(row, model, dataset, n_images):
    line = pd.Series(row, dtype=object)
    try:
        text = build_text(model, line, dataset)
        question = build_question(model, line, dataset, n_images)
    except ValueError as exc:
        assert "question" in str(exc)
        q = row.get("question")
        assert q is None or (isinstance(q, float) and math.isnan(q))
        return
    assert isinstance(text, str) and isinstance(question, str)
    assert question.count("<image>") == n_images or (n_images == 0 and "<image>" not in question)
