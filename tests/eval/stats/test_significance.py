"""Statistics on synthetic paired data with a known truth: CI coverage, Holm family-wise error at Δ = 0,
McNemar against scipy's binomial test, MDE power, and the grouped statistics' bootstrap. Small-sample behaviour
(randomization test size, coverage by n, one-directional cases) is in test_small_sample_stats.py."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from minimonkey_eval.eval.stats import significance as sig
from minimonkey_eval.eval.stats.units import Units, rule_for, units_from_rows

B = 2000   # resamples in the simulations (the report uses 10,000; coverage does not depend on it)


def mean_units(dataset: str, scores) -> object:
    scores = np.asarray(scores, dtype=float)
    return units_from_rows(dataset, pd.DataFrame({"index": [str(i) for i in range(len(scores))], "score": scores}))


# Joint pmf of (A, B) unit scores on {0, 1/3, 2/3, 1}: TextVQA-like fractional scores with correlated runs.
LEVELS = np.array([0, 1 / 3, 2 / 3, 1])


def joint_pmf(shift: float) -> np.ndarray:
    base = np.array([[0.20, 0.03, 0.02, 0.01], [0.03, 0.08, 0.03, 0.02], [0.02, 0.03, 0.08, 0.03],
                     [0.01, 0.02, 0.03, 0.36]])
    p = base.copy()
    p[3, 0] += shift                      # A right where B wrong: moves the true Δ by `shift`
    p[0, 0] -= shift
    return p / p.sum()


def draw_pairs(rng, pmf: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    cells = rng.choice(pmf.size, size=n, p=pmf.ravel())
    return LEVELS[cells // 4], LEVELS[cells % 4]


def true_delta(pmf: np.ndarray) -> float:
    return 100 * float(sum(pmf[i, j] * (LEVELS[i] - LEVELS[j]) for i in range(4) for j in range(4)))


def test_ci_coverage_of_known_delta():
    """200 synthetic paired datasets (100 binary, 100 fractional), true Δ known: 95% CI covers it 93-97%."""
    rng = np.random.default_rng(14)
    covered = 0
    binary_pmf = np.array([[0.30, 0.06], [0.11, 0.53]])      # (A, B) in {0,1}^2: true Δ = 11 - 6 = 5 points
    for k in range(200):
        n = 300 + 10 * (k % 10)
        if k % 2 == 0:
            cells = rng.choice(4, size=n, p=binary_pmf.ravel())
            a, b, truth = (cells // 2).astype(float), (cells % 2).astype(float), 5.0
        else:
            pmf = joint_pmf(0.04)
            (a, b), truth = draw_pairs(rng, pmf, n), true_delta(pmf)
        r = sig.paired(mean_units("TextVQA_VAL", a), mean_units("TextVQA_VAL", b), resamples=B, seed=k)
        assert r.delta == pytest.approx(100 * (a.mean() - b.mean()))
        covered += r.lo <= truth <= r.hi
    print(f"coverage {covered / 200:.3f}")
    assert 0.93 <= covered / 200 <= 0.97


def _fast_units(dataset: str, scores: np.ndarray):
    """`mean` units straight from an array (the simulations build thousands; no pandas)."""
    rule = rule_for(dataset)
    comp = np.stack([scores, np.ones_like(scores)], axis=1).astype(float)
    return Units(rule.dataset, np.arange(len(scores)).astype(str).astype(object), comp,
                 np.zeros(len(scores), dtype=np.int64), ("all",), rule)


def _p_value(rng, kind: str, n: int, seed: int) -> float:
    """p of one benchmark under Δ = 0 (exchangeable pairs)."""
    if kind == "binary":
        cells = rng.choice(4, size=n, p=[0.3, 0.08, 0.08, 0.54])
        return sig.mcnemar_p(int(np.sum(cells == 2)), int(np.sum(cells == 1)))
    if kind == "fraction":
        a, b = draw_pairs(rng, joint_pmf(0.0), n)
        ua, ub = _fast_units("TextVQA_VAL", a), _fast_units("TextVQA_VAL", b)
    else:  # POPE F1 of yes/no answers: a ratio statistic recomputed from resampled units
        truth = rng.random(n) < 0.5
        shared = rng.random(n) < 0.8                      # both runs answer alike on 80% of the questions
        right_a = rng.random(n) < 0.85
        right_b = np.where(shared, right_a, rng.random(n) < 0.85)
        rows = lambda right: pd.DataFrame({"index": [str(i) for i in range(n)], "category": "random",  # noqa: E731
                                           "answer": np.where(truth, "Yes", "No"),
                                           "extracted": np.where(truth == right, "Yes", "No"),
                                           "score": right.astype(float)})
        ua, ub = units_from_rows("POPE", rows(right_a)), units_from_rows("POPE", rows(right_b))
    return sig.randomization_test(ua, ub, resamples=B, seed=seed).p


def test_holm_rejections_at_zero_delta():
    """Δ = 0 on all 16 benchmarks (13 exact McNemar, 3 paired randomization incl. POPE's F1), 200 replications:
    Holm-adjusted rejections stay <= 5% of the tests, and the family-wise rate (any rejection among the 16)
    is not above 5%: its count is no evidence against FWER <= 5% (one-sided binomial test at 1%; the exact
    McNemar size at these n makes the true FWER about 3-4%, so 200 replications estimate it within ±3 points).
    Without the adjustment the family-wise rate would be about 50%."""
    rng = np.random.default_rng(2024)
    kinds = ["binary"] * 13 + ["fraction", "fraction", "pope"]
    families, tests, unadjusted = 0, 0, 0
    for rep in range(200):
        ps = [_p_value(rng, kind, 250, 1000 * rep + j) for j, kind in enumerate(kinds)]
        rejected = [q < 0.05 for q in sig.holm(ps)]
        families += any(rejected)
        tests += sum(rejected)
        unadjusted += any(p < 0.05 for p in ps)
    print(f"family-wise rejections {families}/200 (unadjusted {unadjusted}/200), tests rejected {tests}/3200")
    assert tests / (200 * 16) <= 0.05
    assert binomtest(families, 200, 0.05, alternative="greater").pvalue > 0.01
    assert unadjusted / 200 > 0.3          # the simulation has power to show what the adjustment prevents


def test_mcnemar_equals_scipy_binomtest_on_discordant_pairs():
    rng = np.random.default_rng(7)
    for n, pmf in ((40, [0.4, 0.1, 0.05, 0.45]), (500, [0.3, 0.12, 0.06, 0.52]), (25, [0.5, 0.0, 0.0, 0.5])):
        cells = rng.choice(4, size=n, p=pmf)
        a, b = cells // 2, cells % 2
        r = sig.paired(mean_units("AI2D_TEST", a), mean_units("AI2D_TEST", b), resamples=B)
        only_a, only_b = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
        assert r.test == sig.MCNEMAR and r.discordant == (only_a, only_b)
        want = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        assert r.p == want
        assert r.delta == pytest.approx(100 * (only_a - only_b) / n)


def test_fractional_units_use_the_randomization_test():
    rng = np.random.default_rng(3)
    a, b = draw_pairs(rng, joint_pmf(0.15), 400)
    r = sig.paired(mean_units("DocVQA_VAL", a), mean_units("DocVQA_VAL", b), resamples=B)
    assert r.test.startswith(sig.RANDOMIZATION + " (Monte Carlo, 2000 sign flips, ±") and r.discordant is None
    assert r.p < 0.01 and r.lo > 0 and r.verdict == sig.BETTER   # a 15-point shift on 400 questions is clear
    assert r.ci_method.startswith("paired percentile bootstrap") and not r.note
    same = sig.paired(mean_units("DocVQA_VAL", a), mean_units("DocVQA_VAL", a), resamples=B)
    assert (same.delta, same.p, same.verdict, same.differing) == (0, 1.0, sig.SAME, 0)
    # identical runs on 400 units do not prove Δ = 0 exactly: the interval bounds how often they could differ
    assert same.lo < 0 < same.hi and same.ci_method == sig.NEWCOMBE and math.isnan(same.mde)


def test_holm_textbook_example():
    # m = 4: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert sig.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = sig.holm([0.2, math.nan, 0.01])          # NaN is not a test: m = 2
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert sig.holm([0.6, 0.7]) == [1.0, 1.0]


def test_mde_has_80_percent_power():
    """A true Δ equal to the MDE (n = 1000 questions, 10% discordant) is detected in about 80% of 400 draws."""
    n, disc = 1000, 0.10
    mde = sig.mde_binary(n, int(disc * n), 100.0)
    assert mde == pytest.approx((1.959964 + 0.841621) * math.sqrt(100) / 1000 * 100, rel=1e-5)
    rng = np.random.default_rng(11)
    d = mde / 100
    p10, p01 = (disc + d) / 2, (disc - d) / 2
    hits = 0
    for _ in range(400):
        cells = rng.choice(3, size=n, p=[p10, p01, 1 - p10 - p01])
        hits += sig.mcnemar_p(int(np.sum(cells == 0)), int(np.sum(cells == 1))) < 0.05
    print(f"power at the MDE: {hits / 400:.3f}")
    assert 0.70 <= hits / 400 <= 0.90


def test_ocrbench_points_and_mde_in_points():
    a = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1], dtype=float)
    b = np.array([1, 0, 0, 1, 0, 1, 0, 0, 1, 1], dtype=float)
    ua, ub = mean_units("OCRBench", a), mean_units("OCRBench", b)
    assert ua.headline() == 7 and ub.headline() == 5 and ua.binary
    r = sig.paired(ua, ub, resamples=B)
    assert r.delta == 2 and r.discordant == (2, 0)
    assert math.isnan(r.mde) and "2 differing units" in r.mde_note  # 2.8·√2 = 4 points > the 2 the units allow
    assert r.lo < 0 < 2 < r.hi <= 10 and r.ci_method == sig.NEWCOMBE and not r.note   # points; agrees with p = 0.5
    a20 = np.array([1] * 7 + [0] * 2 + [1] * 6 + [0] * 5, dtype=float)          # 9 discordant units of 20
    b20 = np.array([0] * 7 + [1] * 2 + [1] * 6 + [0] * 5, dtype=float)
    r = sig.paired(mean_units("OCRBench", a20), mean_units("OCRBench", b20), resamples=B)
    d = sum(r.discordant)
    assert r.discordant == (7, 2) and d >= sig.MIN_MDE_UNITS
    assert r.mde == pytest.approx((1.959964 + 0.841621) * math.sqrt(d), rel=1e-5)   # points: n cancels


def test_stratified_mme_resampling_keeps_every_category():
    rows = []
    for c, cat in enumerate(("OCR", "color", "code_reasoning")):
        for i in range(20):
            s = [float((i + c) % 3 != 0), float((i + 2 * c) % 4 != 0)]
            rows += [dict(index=f"{cat}{i}{q}", category=cat, image_path=f"{cat}/{i}.png", score=s[q]) for q in (0, 1)]
    u = units_from_rows("MME", pd.DataFrame(rows))
    assert u.n_strata == 3 and len(u.ids) == 60
    (stats,) = sig.bootstrap_stats([u], resamples=B, seed=1)
    assert np.all(np.isfinite(stats)) and stats.min() > 0        # no resample loses a category
    lo, hi = sig.percentile_ci(stats)
    assert lo < u.headline() < hi


def test_resampling_is_seeded_and_paired():
    rng = np.random.default_rng(5)
    a, b = draw_pairs(rng, joint_pmf(0.05), 200)
    ua, ub = mean_units("TextVQA_VAL", a), mean_units("TextVQA_VAL", b)
    r1, r2 = sig.paired(ua, ub, resamples=B, seed=9), sig.paired(ua, ub, resamples=B, seed=9)
    assert (r1.lo, r1.hi, r1.p) == (r2.lo, r2.hi, r2.p)
    # paired: identical runs give a zero-width CI, while each run alone varies
    sa, sb = sig.bootstrap_stats([ua, ua], resamples=B, seed=9)
    assert np.array_equal(sa, sb) and sa.std() > 0
    # unpaired spread is wider than paired spread for positively correlated runs
    (sa,), (sb,) = sig.bootstrap_stats([ua], resamples=B, seed=1), sig.bootstrap_stats([ub], resamples=B, seed=2)
    assert np.std(sa - sb) > r1.se


def test_no_bootstrap_verdict_from_a_handful_of_units():
    """Five units all favouring A: the bootstrap would say p = 0.0002; the exact randomization test says
    2/2^5 = 0.0625 (the smallest p five units allow), so no verdict, and the note says why the interval beside it
    excludes 0; one-unit strata (MME) get no CI."""
    a, b = np.array([1, 1, 1, 0.5, 1]), np.array([0.5, 0.5, 0, 0, 1 / 3])
    r = sig.paired(mean_units("TextVQA_VAL", a), mean_units("TextVQA_VAL", b), resamples=B)
    assert r.p == pytest.approx(0.0625) and r.verdict == sig.SAME and "exact, 2^5" in r.test and r.lo > 0
    assert "excludes 0" in r.note and math.isnan(r.mde)
    rows = [dict(index=f"{c}{q}", category=c, image_path=f"{c}.png", score=float(q == 0 or c == "OCR"))
            for c in ("OCR", "color", "count") for q in (0, 1)]
    u = units_from_rows("MME", pd.DataFrame(rows))
    r = sig.paired(u, u, resamples=B)
    assert u.min_stratum() == 1 and math.isnan(r.lo) and math.isnan(r.hi) and math.isnan(sig.run_ci(u).lo)
