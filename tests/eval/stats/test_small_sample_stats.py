"""Small-sample behaviour of the paired statistics, against brute force and simulations with a known truth:
the randomization test's size with 6-24 differing units, exact enumeration = a brute-force loop, the Monte Carlo
p within its stated error, CI coverage by n for every interval that is shown, one-directional results, and the
notes that explain a verdict that disagrees with its interval. Simulations are vectorised or use the pandas-free
`Units` builder; each test runs in a few seconds on one core."""
from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from minimonkey_eval.eval.stats import significance as sig
from minimonkey_eval.eval.stats.units import Units, rule_for, units_from_rows

ALPHA = 0.05


def fast_units(dataset: str, scores) -> Units:
    """'mean' / 'sum' units straight from an array (no pandas)."""
    rule = rule_for(dataset)
    scores = np.asarray(scores, dtype=float)
    comp = np.stack([scores, np.ones_like(scores)], axis=1) if rule.statistic == "mean" else scores[:, None]
    return Units(rule.dataset, np.arange(len(scores)).astype(str).astype(object), comp,
                 np.zeros(len(scores), dtype=np.int64), ("all",), rule)


def fractional(rng, size) -> np.ndarray:
    """ANLS-like scores: 0 or 1 mostly, else a value in [0.5, 1) (every fractional value distinct)."""
    u = rng.random(size)
    return np.where(u < 0.3, 0.0, np.where(u < 0.6, 1.0, 0.5 + 0.5 * rng.random(size)))


def null_pair(rng, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """A true null: both runs score alike on n - m units; on m units they differ, A and B drawn iid
    (exchangeable), fractional."""
    a = fractional(rng, n)
    b = a.copy()
    pos = rng.choice(n, size=m, replace=False)
    xa, xb = fractional(rng, m), fractional(rng, m)
    while np.any(same := xa == xb):           # redraw both: the pair's law stays symmetric in A and B
        xa[same], xb[same] = fractional(rng, int(same.sum())), fractional(rng, int(same.sum()))
    a[pos], b[pos] = xa, xb
    return a, b


# ------------------------------------------------------------------------------------------------ exactness
def brute_force_p(ua: Units, ub: Units) -> float:
    """Every subset of the differing units swapped between the runs, the headline recomputed by Units itself."""
    rows = np.flatnonzero(np.any(ua.comp != ub.comp, axis=1))
    observed = abs(ua.headline() - ub.headline())
    tol = sig.TIE_TOLERANCE * max(1.0, abs(ua.headline()), abs(ub.headline()))
    hits = 0
    for flips in itertools.product((False, True), repeat=len(rows)):
        ca, cb = ua.comp.copy(), ub.comp.copy()
        swap = rows[list(flips)]
        ca[swap], cb[swap] = ub.comp[swap], ua.comp[swap]
        hits += abs(replace(ua, comp=ca).headline() - replace(ub, comp=cb).headline()) >= observed - tol
    return hits / 2 ** len(rows)


def mme_units(scores: list[tuple[str, float, float]]) -> Units:
    rows = [dict(index=f"{c}{i}{q}", category=c, image_path=f"{c}/{i}.png", score=s[q])
            for i, (c, *s) in enumerate(scores) for q in (0, 1)]
    return units_from_rows("MME", pd.DataFrame(rows))


def pope_units(right: np.ndarray, truth: np.ndarray) -> Units:
    n = len(right)
    return units_from_rows("POPE", pd.DataFrame({
        "index": [str(i) for i in range(n)], "category": ["random,popular" if i % 3 == 0 else "adversarial"
                                                           for i in range(n)],
        "answer": np.where(truth, "Yes", "No"), "extracted": np.where(truth == right, "Yes", "No"),
        "score": right.astype(float)}))


def test_exact_enumeration_equals_brute_force():
    """Mean of fractional scores (with repeated differing rows, enumerated by counts), MME (strata, acc+) and
    POPE F1 (a ratio of sums): the exact p equals the brute-force loop over all 2^m swaps."""
    a = np.array([1, 0.5, 0.75, 0, 1, 1, 0.5, 0, 1, 0.6, 1, 1])
    b = np.array([0, 0.5, 0.25, 1, 0, 0, 0.5, 0, 0.5, 0.6, 0, 1])       # rows (1, 0) repeat: counts enumerated
    cases = [(fast_units("DocVQA_VAL", a), fast_units("DocVQA_VAL", b))]
    cats = ("OCR", "color", "code_reasoning")
    rng = np.random.default_rng(1)
    sa = [(cats[i % 3], *map(float, rng.random(2) < 0.7)) for i in range(12)]
    sb = [(c, *(x if rng.random() < 0.6 else 1 - x for x in s)) for c, *s in sa]
    cases.append((mme_units(sa), mme_units(sb)))
    truth, right_a = rng.random(24) < 0.5, rng.random(24) < 0.8
    right_b = np.where(rng.random(24) < 0.6, right_a, ~right_a)
    cases.append((pope_units(right_a, truth), pope_units(right_b, truth)))
    for ua, ub in cases:
        r = sig.randomization_test(ua, ub)
        assert 4 <= r.differing <= 12 and r.exact and r.error == 0, (ua.dataset, r.differing)
        want = brute_force_p(ua, ub)
        assert r.p == pytest.approx(want, abs=1e-12), ua.dataset
        assert sig.paired(ua, ub).p == r.p
    ua, ub = cases[0]
    assert sig.randomization_test(ua, ub).patterns < 2 ** sig.randomization_test(ua, ub).differing  # by counts


def test_monte_carlo_p_within_its_stated_error_of_the_exact_p():
    """16 differing units (2^16 patterns, exact) against the Monte Carlo path forced on the same data: each MC p
    lies within its stated 99% error of the exact p, and the test name carries that error."""
    rng = np.random.default_rng(7)
    for k in range(8):
        a = fractional(rng, 120)
        b = a.copy()
        a[:16], b[:16] = 0.6 + 0.4 * rng.random(16), 0.6 + 0.4 * rng.random(16)
        b[: 2 * k] = a[: 2 * k] - 0.5                                  # from a null to a clear shift
        ua, ub = fast_units("InfoVQA_VAL", a), fast_units("InfoVQA_VAL", b)
        exact = sig.randomization_test(ua, ub)
        mc = sig.randomization_test(ua, ub, resamples=4000, seed=k, max_patterns=1)
        assert exact.exact and not mc.exact and mc.flips == 4000
        assert abs(mc.p - exact.p) <= mc.error, (k, mc.p, exact.p, mc.error)
        assert 0 < mc.error < 0.03 and mc.label.startswith(f"{sig.RANDOMIZATION} (Monte Carlo, 4000 sign flips, ±")
    # more than 2^20 patterns: paired() takes the Monte Carlo path and names it
    a, b = null_pair(rng, 300, 40)
    r = sig.paired(fast_units("DocVQA_VAL", a), fast_units("DocVQA_VAL", b), resamples=2000)
    assert r.test.startswith(f"{sig.RANDOMIZATION} (Monte Carlo, 2000 sign flips, ±") and r.p_error > 0


# ------------------------------------------------------------------------------------------------ size
def test_randomization_test_size_with_few_differing_units():
    """True nulls, 300 fractional units of which 6, 12 or 24 differ (400 simulated datasets each): the test
    rejects at most 5% (no evidence above 5%: one-sided binomial test at 1%), exactly and by Monte Carlo (forced
    at 24 differing units). The paired bootstrap p it replaced rejects far more often on the same data."""
    rng = np.random.default_rng(2024)
    boot_hits = 0
    for m in (6, 12, 24):
        hits = 0
        for k in range(400):
            a, b = null_pair(rng, 300, m)
            ua, ub = fast_units("DocVQA_VAL", a), fast_units("DocVQA_VAL", b)
            r = sig.randomization_test(ua, ub, resamples=1000, seed=k, max_patterns=1 if m > 20 else 2 ** 20)
            assert r.exact == (m <= 20)
            hits += r.p < ALPHA
            if m == 6:
                boot_hits += sig.bootstrap_p(np.subtract(*sig.bootstrap_stats([ua, ub], 1000, k))) < ALPHA
        print(f"{m} differing units: {hits}/400 rejected")
        assert binomtest(hits, 400, ALPHA, alternative="greater").pvalue > 0.01, (m, hits)
    print(f"old bootstrap p at 6 differing units: {boot_hits}/400 rejected")
    assert binomtest(boot_hits, 400, ALPHA, alternative="greater").pvalue < 0.01   # the simulation sees that failure


# ------------------------------------------------------------------------------------------------ coverage
NS = (10, 20, 50, 100, 300)


def _covered(lo, hi, truth) -> bool:
    return lo - 1e-9 <= truth <= hi + 1e-9


def test_binary_single_run_wilson_coverage():
    """0/1 units, one run: true accuracy drawn uniformly in [0.05, 0.95] per dataset (1000 per n); the Wilson
    interval run_ci shows covers it >= 93% at every n, and has non-zero width even at 10/10."""
    rng = np.random.default_rng(1)
    for n in NS:
        truth = rng.uniform(0.05, 0.95, 1000)
        covered = 0
        for t in truth:
            ci = sig.run_ci(fast_units("AI2D_TEST", rng.random(n) < t))
            assert ci.method == sig.WILSON
            covered += _covered(ci.lo, ci.hi, 100 * t)
        print(f"Wilson n={n}: {covered / 1000:.3f}")
        assert covered / 1000 >= 0.93, n
    ci = sig.run_ci(fast_units("OCRBench", np.ones(10)))          # a points sum, every unit right
    assert ci.headline == 10 and ci.hi == 10 and 6 < ci.lo < 10


PAIRED_CELLS = ((0.60, 0.10, 0.05, 0.25), (0.45, 0.08, 0.08, 0.39), (0.70, 0.05, 0.02, 0.23),
                (0.80, 0.04, 0.01, 0.15), (0.30, 0.15, 0.10, 0.45), (0.85, 0.03, 0.03, 0.09))


def test_binary_paired_newcombe_coverage():
    """0/1 units, two runs: (both right, only A, only B, both wrong) from six realistic tables, 900 datasets per n;
    the Newcombe interval covers the true Δ >= 93% at every n."""
    rng = np.random.default_rng(2)
    for n in NS:
        covered = 0
        for k in range(900):
            cells = PAIRED_CELLS[k % len(PAIRED_CELLS)]
            draw = rng.choice(4, size=n, p=cells)
            a, b = np.isin(draw, (0, 1)), np.isin(draw, (0, 2))
            r = sig.paired(fast_units("AI2D_TEST", a), fast_units("AI2D_TEST", b))
            assert r.test == sig.MCNEMAR and r.ci_method == sig.NEWCOMBE and r.hi > r.lo
            covered += _covered(r.lo, r.hi, 100 * (cells[1] - cells[2]))
        print(f"Newcombe n={n}: {covered / 900:.3f}")
        assert covered / 900 >= 0.93, n


def score_pmf(kind: str, mean: float) -> tuple[np.ndarray, np.ndarray]:
    """(values, probabilities) of one unit's score with the given mean: 'anls' (0/1 with 10-15% values in
    [0.55, 0.95]) or 'vqa' (0, 1/3, 2/3, 1)."""
    if kind == "anls":
        frac = 0.15 if 0.2 <= mean <= 0.95 else min(0.10, mean)
        vals = np.array([0.0, 0.55, 0.65, 0.75, 0.85, 0.95, 1.0])
        p1 = mean - frac / 5 * vals[1:6].sum()
        return vals, np.array([1 - frac - p1, *[frac / 5] * 5, p1])
    f = min(0.15, 1.6 * mean, 1.6 * (1 - mean))
    return np.array([0, 1 / 3, 2 / 3, 1]), np.array([1 - f / 2 - mean, f / 2, f / 2, mean - f / 2])


DISTRIBUTIONS = [(k, m) for k in ("anls", "vqa") for m in (0.1, 0.5, 0.9)]


def test_fractional_single_run_coverage():
    """Fractional scores, one run: ANLS- and VQA-like scores with means 0.1, 0.5, 0.9 (100 datasets each per n);
    the interval run_ci shows (Wilson below 30 units off the mode, bootstrap above) covers the true mean >= 93% at
    every n, and each method where it is used."""
    rng = np.random.default_rng(3)
    by_method: dict[str, list[bool]] = {}
    for n in NS:
        covered = []
        for kind, mean in DISTRIBUTIONS:
            vals, p = score_pmf(kind, mean)
            for _ in range(100):
                ci = sig.run_ci(fast_units("DocVQA_VAL", vals[rng.choice(len(vals), size=n, p=p)]), resamples=1000)
                ok = _covered(ci.lo, ci.hi, 100 * mean)
                covered.append(ok)
                by_method.setdefault(ci.method.split(" (")[0], []).append(ok)
        print(f"fractional single n={n}: {np.mean(covered):.3f}")
        assert np.mean(covered) >= 0.93, n
    print({k: (round(float(np.mean(v)), 3), len(v)) for k, v in by_method.items()})
    assert set(by_method) == {sig.WILSON, "percentile bootstrap"}
    assert all(np.mean(v) >= 0.93 for v in by_method.values())


def test_fractional_paired_coverage():
    """Fractional scores, two runs: B equals A except on a share q of units where it is redrawn from a
    distribution with a mean 0.05 lower (true Δ = 5q points), 60 datasets per distribution per n, q chosen so
    that from 2 to 100 units differ; the interval paired() shows covers the true Δ >= 93% at every n, and each
    method where it is used (the p is not looked at here: Monte Carlo with few flips keeps the test fast)."""
    rng = np.random.default_rng(4)
    by_method: dict[str, list[bool]] = {}
    for n in NS:
        covered = []
        for kind, mean in DISTRIBUTIONS:
            va, pa = score_pmf(kind, mean)
            vb, pb = score_pmf(kind, mean - 0.05)
            for k in range(60):
                q = (0.03, 0.1, 0.3, 1.0)[k % 4] if n >= 100 else 1.0
                a = va[rng.choice(len(va), size=n, p=pa)]
                redraw = rng.random(n) < q
                b = np.where(redraw, vb[rng.choice(len(vb), size=n, p=pb)], a)
                r = sig.paired(fast_units("TextVQA_VAL", a), fast_units("TextVQA_VAL", b), resamples=500, seed=k,
                               max_patterns=1)
                ok = _covered(r.lo, r.hi, 100 * q * 0.05)
                covered.append(ok)
                by_method.setdefault(r.ci_method.split(" (")[0], []).append(ok)
        print(f"fractional paired n={n}: {np.mean(covered):.3f}")
        assert np.mean(covered) >= 0.93, n
    print({k: (round(float(np.mean(v)), 3), len(v)) for k, v in by_method.items()})
    assert set(by_method) == {sig.NEWCOMBE, "paired percentile bootstrap"}
    assert all(np.mean(v) >= 0.93 for v in by_method.values())


# ------------------------------------------------------------------------------------------------ one direction
def _consistent(r: sig.PairedResult) -> bool:
    """The interval excludes 0 exactly when the test rejects, or the result says why not."""
    excludes = r.lo > 0 or r.hi < 0
    return excludes == (r.p < ALPHA) or bool(r.note)


def test_one_directional_results_have_width_and_agree_with_the_test():
    """Every differing unit favours A (the case the bootstrap showed as [+100, +100]): the CI has non-zero width,
    contains Δ, and excludes 0 only when the test rejects, or the note says why."""
    r = sig.paired(fast_units("AI2D_TEST", np.ones(10)), fast_units("AI2D_TEST", np.zeros(10)))
    assert r.delta == 100 and r.hi == 100 and 50 < r.lo < 100 and r.verdict == sig.BETTER and not r.note
    for n in (10, 30, 100, 300):
        for d in range(1, min(n // 2, 13) + 1):
            a = np.zeros(n)
            a[: n // 2 + d] = 1
            b = np.zeros(n)
            b[: n // 2] = 1
            r = sig.paired(fast_units("AI2D_TEST", a), fast_units("AI2D_TEST", b))
            assert r.hi > r.lo and r.lo <= r.delta <= r.hi and _consistent(r), (n, d, r)
            f = a.copy()
            f[n // 2: n // 2 + d] = 0.5 + 0.4 * (np.arange(d) % 3) / 2          # fractional gains: 0.5, 0.7, 0.9
            r = sig.paired(fast_units("DocVQA_VAL", f), fast_units("DocVQA_VAL", b), resamples=1000)
            assert r.test.startswith(sig.RANDOMIZATION) and r.p == pytest.approx(min(1.0, 2 / 2 ** d))
            assert r.hi > r.lo and r.lo <= r.delta <= r.hi and _consistent(r), (n, d, r)


def test_notes_explain_a_verdict_the_interval_does_not_show():
    # 10 of 300 fractional units, each a little better in A: the exact test rejects (p = 2/2^10), the interval
    # for the mean (a tenth of a point) reaches 0
    a = np.r_[np.full(10, 0.9), np.ones(150), np.zeros(140)]
    b = np.r_[np.full(10, 0.85), np.ones(150), np.zeros(140)]
    r = sig.paired(fast_units("DocVQA_VAL", a), fast_units("DocVQA_VAL", b))
    assert r.p == pytest.approx(2 / 2 ** 10) and r.verdict == sig.BETTER and r.lo <= 0 < r.hi
    assert "paired randomization p < 0.05 but the 95% CI (Newcombe hybrid score) reaches 0" in r.note
    # the interval excludes 0, the exact test cannot reject with 5 units (p = 2/32)
    a, b = np.r_[np.ones(5), np.zeros(295)], np.zeros(300)
    r = sig.paired(fast_units("AI2D_TEST", a), fast_units("AI2D_TEST", b))
    assert r.p == pytest.approx(0.0625) and r.lo > 0 and r.verdict == sig.SAME
    assert "excludes 0 but exact McNemar p = 0.0625" in r.note
    # Holm: p = 0.021 alone, 0.064 after adjusting for 3 benchmarks
    a, b = np.r_[np.ones(9), np.zeros(291)], np.r_[np.zeros(9), np.ones(1), np.zeros(290)]
    r = sig.paired(fast_units("AI2D_TEST", a), fast_units("AI2D_TEST", b))
    other = sig.paired(fast_units("AI2D_TEST", b), fast_units("AI2D_TEST", b))
    sig.adjust([r, other, other])
    assert r.p < ALPHA <= r.p_holm and r.lo > 0 and r.verdict == sig.SAME and "Holm-adjusted p" in r.note
    assert not other.note


# ------------------------------------------------------------------------------------------------ NaN rules
def test_no_ci_or_mde_where_they_mean_nothing():
    # grouped statistic (POPE F1) with 12 differing units: a p, no CI, no MDE, and the reasons
    rng = np.random.default_rng(5)
    truth, right_a = rng.random(200) < 0.5, rng.random(200) < 0.85
    right_b = right_a.copy()
    right_b[:12] = ~right_b[:12]
    r = sig.paired(pope_units(right_a, truth), pope_units(right_b, truth), resamples=1000)
    assert r.differing == 12 and 0 < r.p <= 1 and "exact" in r.test
    assert math.isnan(r.lo) and math.isnan(r.hi) and r.ci_note.startswith(sig.TOO_FEW)
    assert math.isnan(r.mde) and r.mde_note and sig.TOO_FEW in r.note
    ci = sig.run_ci(pope_units(right_a[:25], truth[:25]))
    assert math.isnan(ci.lo) and ci.note.startswith(sig.TOO_FEW) and not ci.method
    ci = sig.run_ci(pope_units(right_a, truth), resamples=1000)
    assert ci.lo < ci.headline < ci.hi and ci.method.startswith("percentile bootstrap")
    # no discordant units: p = 1, MDE NaN; a handful: MDE NaN (it would exceed every Δ the units allow)
    u = fast_units("AI2D_TEST", right_a)
    r = sig.paired(u, u)
    assert r.p == 1 and math.isnan(r.mde) and r.mde_note == "the runs agree on every unit" and r.hi > 0 > r.lo
    r = sig.paired(fast_units("AI2D_TEST", right_b), u)
    assert r.differing == 12 and r.mde > 0
