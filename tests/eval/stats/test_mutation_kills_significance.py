"""Statistics on cases with known answers: Holm-adjusted verdicts, the two-sided p of a known vector, unequal strata
against a per-stratum computation, CI status at the interval's ends, alpha itself not significant, and the
same-units checks."""
from __future__ import annotations

import math
import zlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, norm

from minimonkey_eval.eval.stats import significance as sig
from minimonkey_eval.eval.stats.units import units_from_rows

Z = norm.ppf(0.975)


def mean_units(scores, dataset: str = "TextVQA_VAL", ids=None):
    scores = np.asarray(scores, dtype=float)
    ids = [str(i) for i in range(len(scores))] if ids is None else ids
    return units_from_rows(dataset, pd.DataFrame({"index": ids, "score": scores}))


def result(delta=1.0, p=0.01, p_holm=math.nan, lo=0.5, hi=1.5) -> sig.PairedResult:
    return sig.PairedResult("X", 100, 50 + delta, 50, delta, lo, hi, 0.3, sig.MCNEMAR, p, (3, 1), 4, math.nan,
                            p_holm=p_holm, ci_method=sig.NEWCOMBE)


# ------------------------------------------------------------------------------------------------ verdicts
def test_verdict_reads_the_holm_adjusted_p():
    assert result(p=0.01).verdict == sig.BETTER
    assert result(p=0.01, p_holm=0.09).verdict == sig.SAME
    assert result(delta=-1.0, p=0.2, p_holm=0.04, lo=-1.5, hi=-0.5).verdict == sig.WORSE
    adjusted = sig.adjust([result(p=0.01), result(p=0.04), result(p=0.03)])
    assert [r.p_holm for r in adjusted] == pytest.approx([0.03, 0.06, 0.06])
    assert [r.verdict for r in adjusted] == [sig.BETTER, sig.SAME, sig.SAME]


def test_alpha_itself_is_not_significant():
    assert sig.verdict(2.0, 0.05) == sig.SAME
    assert sig.verdict(2.0, 0.0499999) == sig.BETTER
    assert sig.verdict(-2.0, 0.01) == sig.WORSE
    assert sig.verdict(0.0, 0.0) == sig.SAME
    assert sig.verdict(math.nan, 0.0) == sig.SAME and sig.verdict(1.0, math.nan) == sig.SAME
    assert sig.verdict(1.0, 0.07, alpha=0.1) == sig.BETTER


def test_holm_known_values_and_nans():
    assert sig.holm([0.01, math.nan, 0.04, 0.03]) == pytest.approx([0.03, math.nan, 0.06, 0.06], nan_ok=True)
    assert sig.holm([0.5, 0.4]) == [0.8, 0.8]                       # step-down stays monotone, capped at 1
    assert sig.holm([0.9, 0.8, 0.001]) == [1.0, 1.0, 0.003]
    assert sig.holm([]) == []


def test_agreement_notes():
    assert result().agreement == ""
    assert result(lo=-0.1).agreement.startswith("exact McNemar p < 0.05 but the 95% CI (Newcombe hybrid score) "
                                                "reaches 0")
    assert "p (Holm) < 0.05" in result(p=0.001, p_holm=0.01, lo=-0.1).agreement
    holm_note = result(p=0.01, p_holm=0.2).agreement
    assert holm_note.startswith("the 95% CI excludes 0 and exact McNemar p = 0.0100, but the Holm-adjusted p = "
                                "0.2000 >= 0.05")
    plain = result(p=0.3).agreement
    assert plain.startswith("the 95% CI (Newcombe hybrid score) excludes 0 but exact McNemar p = 0.3000 >= 0.05")
    assert result(delta=-1.0, p=0.01, lo=-2, hi=-0.5).agreement == ""
    assert result(delta=-1.0, p=0.01, lo=-2, hi=0.5).agreement != ""
    assert result(p=0.3, lo=-0.5, hi=1.0).agreement == "" and result(p=0.3, lo=0.0, hi=1.0).agreement == ""
    assert result(lo=math.nan).agreement == ""
    r = result(p=0.3)
    r.ci_note = "why"
    assert r.note == "why; " + plain


# ------------------------------------------------------------------------------------------------ CI status
@pytest.mark.parametrize("value, status", [(1.0, "inside CI"), (2.0, "inside CI"), (1.5, "inside CI"),
                                           (2.0 + 1e-10, "inside CI"), (1.0 - 1e-10, "inside CI"),
                                           (2.01, "above CI"), (0.99, "below CI"), (math.nan, "not published"),
                                           (None, "not published")])
def test_ci_status_at_the_ends(value, status):
    assert sig.ci_status(value, 1.0, 2.0) == status


@pytest.mark.parametrize("value, lo, hi, status", [
    (0.5, 0.0, 0.5 - 1.5e-9, "above CI"),        # the tolerance is 1e-9 for values up to 1 ...
    (0.5, 0.5 + 1.5e-9, 1.0, "below CI"),
    (0.25 - 1e-9, 0.25, 0.5, "inside CI"),       # ... and its ends belong to the interval
    (0.25 + 1e-9, 0.0, 0.25, "inside CI"),
])
def test_ci_status_tolerance_below_one(value, lo, hi, status):
    assert sig.ci_status(value, lo, hi) == status


def test_ci_status_without_a_ci_and_with_large_values():
    assert sig.ci_status(1.0, math.nan, 2.0) == "no CI" and sig.ci_status(1.0, 0.0, math.nan) == "no CI"
    assert sig.ci_status(1000.0 + 5e-7, 990.0, 1000.0) == "inside CI"      # tolerance relative to the value
    assert sig.ci_status(1000.0 + 5e-6, 990.0, 1000.0) == "above CI"
    assert result(lo=1.0, hi=2.0).published_status == "not published"
    r = result(lo=1.0, hi=2.0)
    r.published_delta = 3.0
    assert r.published_status == "above CI"


# ------------------------------------------------------------------------------------------------ p-values
def test_two_sided_randomization_p_on_a_known_vector():
    """Differences 1, 0.5, 0.25 on three units: only the two all-same-sign flips reach |Δ| = 1.75: p = 2/8."""
    a, b = [1, 0.5, 0.25, 0.3, 0.7], [0, 0, 0, 0.3, 0.7]
    r = sig.randomization_test(mean_units(a), mean_units(b))
    assert r.p == pytest.approx(0.25) and (r.exact, r.differing, r.patterns, r.error) == (True, 3, 8, 0.0)
    assert r.label == "paired randomization (exact, 2^3 sign flips)"
    ties = sig.randomization_test(mean_units([1, 1, 0.5]), mean_units([0.5, 0.5, 0]))   # equal differences
    assert ties.p == pytest.approx(0.25) and ties.patterns == 4        # Binomial(3, 1/2): 4 counts, 2 extreme
    reverse = sig.randomization_test(mean_units(b), mean_units(a))
    assert reverse.p == pytest.approx(0.25)


def test_monte_carlo_randomization_p_and_its_error():
    a, b = [1, 0.5, 0.25, 0.3, 0.7], [0, 0, 0, 0.3, 0.7]
    r = sig.randomization_test(mean_units(a), mean_units(b), resamples=4000, seed=3, max_patterns=4)
    assert not r.exact and r.flips == 4000 and abs(r.p - 0.25) < 0.03
    hits = round(r.p * 4001 - 1)
    lo, hi = sig.wilson_interval(hits / 4000, 4000, 0.99)
    assert r.error == pytest.approx(max(r.p - lo, hi - r.p))
    assert r.label.startswith("paired randomization (Monte Carlo, 4000 sign flips, ±0.0")
    assert sig.Randomization(0.5, 0.0004, False, 10, 3).label.endswith("±4.0e-04)")
    same = sig.randomization_test(mean_units(a), mean_units(a))
    assert (same.p, same.differing) == (1.0, 0) and same.label == "paired randomization (no unit differs)"


def test_monte_carlo_with_repeated_rows_draws_binomial_counts():
    a = [1.0] * 12 + [0.5] * 9
    b = [0.5] * 12 + [0.5] * 9
    r = sig.randomization_test(mean_units(a), mean_units(b), resamples=3000, seed=1, max_patterns=2)
    exact = 2 * 0.5 ** 12                                           # all twelve equal differences flipped alike
    assert not r.exact and r.p < 0.01 and r.p >= 1 / 3001
    assert sig.randomization_test(mean_units(a), mean_units(b)).p == pytest.approx(exact)


def test_bootstrap_p_is_two_sided():
    assert sig.bootstrap_p(np.array([1.0, 1.0, 1.0, -1.0])) == pytest.approx(2 * 2 / 5)
    assert sig.bootstrap_p(np.array([-1.0, -2.0, -3.0, 1.0])) == pytest.approx(2 * 2 / 5)
    assert sig.bootstrap_p(np.array([0.0, 0.0, 1.0])) == 1.0          # zeros count on both sides, capped at 1
    assert sig.bootstrap_p(np.ones(99)) == pytest.approx(2 / 100)


def test_mcnemar_equals_the_binomial_test():
    assert sig.mcnemar_p(0, 0) == 1.0
    assert sig.mcnemar_p(9, 2) == pytest.approx(binomtest(9, 11, 0.5).pvalue)
    assert sig.mcnemar_p(2, 9) == pytest.approx(sig.mcnemar_p(9, 2))


# ------------------------------------------------------------------------------------------------ intervals
def test_wilson_known_values():
    assert sig.wilson_interval(0.5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert sig.wilson_interval(0.0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert sig.wilson_interval(1.0, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert sig.wilson_interval(0.2, 50, 0.90) == pytest.approx((0.12347, 0.30733), abs=1e-5)
    assert all(math.isnan(x) for x in sig.wilson_interval(0.5, 0)) and math.isnan(sig.wilson_interval(math.nan, 5)[0])


def newcombe_from_table(a: int, b: int, c: int, d: int, level: float = 0.95) -> tuple[float, float]:
    """Newcombe (1998) method 10 from the 2x2 table (a: both right, b: A only, c: B only, d: neither)."""
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = sig.wilson_interval(p1, n, level)
    l2, u2 = sig.wilson_interval(p2, n, level)
    num = a * d - b * c
    num = num - n / 2 if num > n / 2 else (0.0 if num >= 0 else num)
    den = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    phi = num / den if den else 0.0
    delta = p1 - p2
    lo = delta - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    hi = delta + math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    return max(-1.0, lo), min(1.0, hi)


# (3, 2, 2, 3) and (4, 2, 2, 2): 0 < ad - bc <= n/2, where the continuity correction sets the correlation to 0
@pytest.mark.parametrize("table", [(30, 12, 3, 55), (5, 1, 0, 4), (0, 3, 1, 6), (10, 0, 0, 10), (20, 8, 9, 3),
                                   (3, 2, 2, 3), (4, 2, 2, 2)])
@pytest.mark.parametrize("level", [0.95, 0.90])
def test_newcombe_equals_method_10_from_the_table(table, level):
    a, b, c, d = table
    xa = np.array([1] * a + [1] * b + [0] * c + [0] * d)
    xb = np.array([1] * a + [0] * b + [1] * c + [0] * d)
    assert sig.newcombe_interval(xa, xb, level) == pytest.approx(newcombe_from_table(*table, level), abs=1e-12)
    assert all(math.isnan(x) for x in sig.newcombe_interval([], []))


def test_mde_known_values():
    assert sig.mde_binary(100, 16, 100.0) == pytest.approx((Z + norm.ppf(0.8)) * 4 / 100 * 100)
    assert sig.mde_binary(100, 0, 100.0) == pytest.approx((Z + norm.ppf(0.8)) / 100 * 100)
    assert math.isnan(sig.mde_binary(0, 5, 100.0))
    assert sig.mde_from_se(2.0) == pytest.approx(2.0 * (Z + norm.ppf(0.8)))
    assert math.isnan(sig.mde_from_se(0.0))


# ------------------------------------------------------------------------------------------------ strata
def test_resampling_draws_within_each_stratum_of_unequal_size():
    """Strata of 3 and 7 units: every resample holds exactly 3 and 7 draws, and each stratum's sums are those of a
    bootstrap of that stratum alone (the same mean and spread as the per-stratum computation)."""
    comp = np.array([[1.0, v] for v in (0, 1, 2)] + [[1.0, v] for v in (10, 20, 30, 40, 50, 60, 70)])
    strata = np.array([0, 0, 0] + [1] * 7)
    sums = sig.resampled_sums(comp, strata, 2, resamples=4000, seed=2)
    assert sums.shape == (4000, 2, 2)
    assert np.all(sums[:, 0, 0] == 3) and np.all(sums[:, 1, 0] == 7)
    assert sums[:, 0, 1].mean() == pytest.approx(3 * 1.0, rel=0.03)          # 3 draws of mean 1
    assert sums[:, 1, 1].mean() == pytest.approx(7 * 40.0, rel=0.01)
    assert sums[:, 0, 1].std() == pytest.approx(math.sqrt(3 * np.var([0, 1, 2])), rel=0.06)
    assert sums[:, 1, 1].std() == pytest.approx(math.sqrt(7 * np.var([10, 20, 30, 40, 50, 60, 70])), rel=0.06)
    assert set(np.unique(sums[:, 0, 1])) <= set(range(7))


def test_resampling_of_many_repeated_rows_keeps_the_counts():
    """Frequent identical rows go through the multinomial step, rare ones through positions: the stratum size is
    kept either way and the means match."""
    rows = np.array([[1.0, 1.0]] * 40 + [[1.0, 0.0]] * 20 + [[1.0, v] for v in np.linspace(0, 1, 5)])
    sums = sig.resampled_sums(rows, np.zeros(len(rows), dtype=int), 1, resamples=3000, seed=4)
    assert np.all(sums[:, 0, 0] == len(rows))
    assert sums[:, 0, 1].mean() == pytest.approx(rows[:, 1].sum(), rel=0.02)
    empty = sig.resampled_sums(np.zeros((0, 2)), np.zeros(0, dtype=int), 2, resamples=5)
    assert empty.shape == (5, 2, 2) and not empty.any()


def test_units_must_be_the_same_in_the_same_order():
    a = mean_units([1, 0, 1, 1])
    other = mean_units([1, 0, 1, 1], ids=["0", "1", "3", "2"])
    with pytest.raises(ValueError, match="TextVQA_VAL: paired resampling needs the same units in the same order"):
        sig.paired(a, other)
    with pytest.raises(ValueError, match="same units in the same order"):
        sig.bootstrap_stats([a, other], resamples=10)
    points = mean_units([1, 0, 1, 1], dataset="OCRBench")
    with pytest.raises(ValueError, match="different components"):
        sig.randomization_test(a, points)


# ------------------------------------------------------------------------------------------------ paired / run_ci
def test_binary_pair_uses_mcnemar_newcombe_and_the_discordant_mde():
    a = [1] * 30 + [1] * 12 + [0] * 3 + [0] * 55
    b = [1] * 30 + [0] * 12 + [1] * 3 + [0] * 55
    r = sig.paired(mean_units(a), mean_units(b))
    assert (r.test, r.discordant, r.differing) == (sig.MCNEMAR, (12, 3), 15)
    assert r.p == pytest.approx(binomtest(12, 15, 0.5).pvalue) and r.delta == pytest.approx(9.0)
    assert (r.lo, r.hi) == pytest.approx(tuple(100 * x for x in newcombe_from_table(30, 12, 3, 55)))
    assert r.mde == pytest.approx((Z + norm.ppf(0.8)) * math.sqrt(15) / 100 * 100)
    assert r.ci_method == sig.NEWCOMBE and r.verdict == sig.BETTER


def test_few_differing_units_give_no_mde_and_say_why():
    a, b = [1] * 5 + [0] * 20, [0] * 5 + [0] * 20
    r = sig.paired(mean_units(a), mean_units(b))
    assert math.isnan(r.mde) and r.mde_note.startswith("5 differing units (< 8)")
    same = sig.paired(mean_units(a), mean_units(a))
    assert math.isnan(same.mde) and same.p == 1.0 and same.verdict == sig.SAME
    assert same.mde_note in ("the runs agree on every unit", "no spread between the runs")
    eight = sig.paired(mean_units([1] * 8 + [0] * 20), mean_units([0] * 28))
    assert not math.isnan(eight.mde) and eight.mde_note == ""
    empty = sig.paired(mean_units([]), mean_units([]))
    assert empty.n == 0 and empty.ci_note == "no units" and math.isnan(empty.p)


def test_fractional_ci_switches_to_the_bootstrap_at_30_differing_units():
    rng = np.random.default_rng(0)
    base = rng.choice([0, 1 / 3, 2 / 3, 1], size=200)
    for differing, method in ((29, sig.NEWCOMBE), (30, "paired percentile bootstrap (500 resamples)")):
        b = base.copy()
        b[:differing] = np.where(base[:differing] > 0.5, base[:differing] - 1 / 3, base[:differing] + 1 / 3)
        r = sig.paired(mean_units(base), mean_units(b), resamples=500)
        assert r.differing == differing and r.ci_method == method
        assert r.test.startswith("paired randomization (") and r.discordant is None
        assert r.se == pytest.approx(100 * np.std(base - b) / math.sqrt(200))


def test_run_ci_wilson_for_binary_and_the_bootstrap_threshold():
    r = sig.run_ci(mean_units([1] * 5 + [0] * 5), published=80.0)
    assert (r.lo, r.hi) == pytest.approx((23.66, 76.34), abs=0.01) and r.method == sig.WILSON and r.note == ""
    assert r.published_status == "above CI" and r.se == pytest.approx(100 * 0.5 / math.sqrt(10))
    few = sig.run_ci(mean_units([1] * 80 + [0.5] * 29))
    assert few.method == sig.WILSON and few.note.startswith("29 units off the most common score (< 30)")
    many = sig.run_ci(mean_units([1] * 80 + [0.5] * 30), resamples=500)
    assert many.method == "percentile bootstrap (500 resamples)" and many.lo < many.headline < many.hi
    assert sig.off_mode(np.array([[1], [1], [0]])) == 1 and sig.off_mode(np.zeros((0, 1))) == 0


def test_seed_for_is_stable_and_per_benchmark():
    assert sig.seed_for("MME") == sig.seed_for("MME") != sig.seed_for("POPE")
    assert sig.seed_for("MME", 1) != sig.seed_for("MME", 2)
    assert 0 <= sig.seed_for("x" * 100, 2 ** 62) < 2 ** 63


def test_small_known_values():
    assert sig.percentile_ci(np.arange(1001.0)) == pytest.approx((25.0, 975.0))
    assert sig.seed_for("", 1) == 1_000_003 and sig.seed_for("MME", 0) == zlib.crc32(b"MME")
    assert sig.bootstrap_p(np.array([0.0, -1.0, -1.0, -1.0, -1.0])) == pytest.approx(2 * 2 / 6)   # 0 counts above
    assert not math.isnan(sig.mde_binary(1, 1, 100.0)) and not math.isnan(sig.mde_from_se(0.5))
    r = sig.paired(mean_units([1, 0, 1, 1] * 5), mean_units([0, 0, 1, 1] * 5))
    assert r.p_error == 0.0 and r.dataset == "TextVQA_VAL"
    assert sig.paired(mean_units([]), mean_units([])).dataset == "TextVQA_VAL"


def test_grouped_run_ci_fields():
    """MME (grouped, per-category strata): no CI below 30 informative units, the bootstrap's SE all the same."""
    rows = []
    for c, cat in enumerate(("OCR", "color")):
        for i in range(6):
            s = [float((i + c) % 3 != 0), float((i + 2 * c) % 4 != 0)]
            rows += [dict(index=f"{cat}{i}{q}", category=cat, image_path=f"{cat}/{i}.png", score=s[q]) for q in (0, 1)]
    u = units_from_rows("MME", pd.DataFrame(rows))
    r = sig.run_ci(u, resamples=400, published=123.0)
    assert (r.dataset, r.n, r.headline, r.published, r.method) == ("MME", 12, u.headline(), 123.0, "")
    assert math.isnan(r.lo) and math.isnan(r.hi) and r.published_status == "no CI"
    assert r.note.startswith(f"{sig.TOO_FEW} (") and "the bootstrap needs 30" in r.note
    (stats,) = sig.bootstrap_stats([u], 400, sig.seed_for("MME", sig.DEFAULT_SEED))
    assert r.se == pytest.approx(float(np.std(stats, ddof=1)))


def mme_units(images_per_category: dict[str, int]):
    """MME units (one per image, two questions each, strata = categories) with mixed answers."""
    rows = []
    for cat, count in images_per_category.items():
        for i in range(count):
            s = [float((i * 7 + len(cat)) % 3 != 0), float((i * 5 + 1) % 4 != 0)]
            rows += [dict(index=f"{cat}{i}{q}", category=cat, image_path=f"{cat}/{i}.png", score=s[q]) for q in (0, 1)]
    return units_from_rows("MME", pd.DataFrame(rows, columns=["index", "category", "image_path", "score"]))


def bootstrap_se(units, resamples: int, seed: int = sig.DEFAULT_SEED) -> float:
    (stats,) = sig.bootstrap_stats([units], resamples, sig.seed_for(units.dataset, seed))
    return float(np.std(stats, ddof=1))


def test_grouped_run_ci_with_a_one_unit_stratum_has_no_ci_and_says_why():
    u = mme_units({"OCR": 1, "color": 5})
    r = sig.run_ci(u, resamples=300, published=150.0)
    assert (r.dataset, r.n, r.headline, r.published, r.method) == ("MME", 6, u.headline(), 150.0, "")
    assert r.note == f"{sig.TOO_FEW} (a stratum has fewer than 2 units)" and math.isnan(r.lo) and math.isnan(r.hi)
    assert r.se == pytest.approx(bootstrap_se(u, 300))
    two = sig.run_ci(mme_units({"OCR": 2, "color": 5}), resamples=300)       # two units per stratum are enough
    assert two.note == f"{sig.TOO_FEW} (3 units off the most common row; the bootstrap needs 30)"


def test_grouped_run_ci_without_units():
    u = mme_units({})
    r = sig.run_ci(u, resamples=300)
    assert (r.dataset, r.n, r.method) == ("MME", 0, "") and math.isnan(r.se) and math.isnan(r.lo)
    assert r.note == f"{sig.TOO_FEW} (a stratum has fewer than 2 units)"


@pytest.mark.parametrize("ocr_images, informative", [(30, 29), (31, 30)])
def test_grouped_run_ci_bootstraps_from_30_informative_units(ocr_images, informative):
    u = mme_units({"OCR": ocr_images, "color": 30})
    assert sig.off_mode(u.comp) == informative
    r = sig.run_ci(u, resamples=300, seed=5, published=200.0)
    assert (r.dataset, r.n, r.headline, r.published) == ("MME", ocr_images + 30, u.headline(), 200.0)
    assert r.se == pytest.approx(bootstrap_se(u, 300, seed=5))
    if informative < 30:
        assert math.isnan(r.lo) and r.method == "" and r.note.startswith(f"{sig.TOO_FEW} (29 units")
        return
    (stats,) = sig.bootstrap_stats([u], 300, sig.seed_for("MME", 5))
    assert (r.lo, r.hi) == pytest.approx(sig.percentile_ci(stats)) and r.lo < r.headline < r.hi
    assert (r.method, r.note) == ("percentile bootstrap (300 resamples)", "")
    again, other = sig.run_ci(u, resamples=300, seed=5), sig.run_ci(u, resamples=300, seed=6)
    assert (again.lo, again.hi) == (r.lo, r.hi) and (other.lo, other.hi) != (r.lo, r.hi)


def test_fractional_run_ci_fields_in_both_branches():
    few = sig.run_ci(mean_units([1] * 80 + [0.5] * 29), published=90.0)
    scores = np.array([1] * 80 + [0.5] * 29)
    assert (few.dataset, few.n, few.published, few.method) == ("TextVQA_VAL", 109, 90.0, sig.WILSON)
    assert few.note == ("29 units off the most common score (< 30): Wilson interval at the binomial variance "
                        "bound, conservative for fractional scores")
    assert few.se == pytest.approx(100 * np.std(scores) / math.sqrt(109))
    assert (few.lo, few.hi) == pytest.approx(tuple(100 * v for v in sig.wilson_interval(scores.mean(), 109)))
    u = mean_units([1] * 80 + [0.5] * 30)
    many = sig.run_ci(u, resamples=400, seed=3, published=91.0)
    assert (many.dataset, many.n, many.published) == ("TextVQA_VAL", 110, 91.0)
    assert (many.method, many.note) == ("percentile bootstrap (400 resamples)", "")
    assert many.se == pytest.approx(100 * np.std(np.array([1] * 80 + [0.5] * 30)) / math.sqrt(110))
    (stats,) = sig.bootstrap_stats([u], 400, sig.seed_for("TextVQA_VAL", 3))
    assert (many.lo, many.hi) == pytest.approx(sig.percentile_ci(stats))
    again, other = sig.run_ci(u, resamples=400, seed=3), sig.run_ci(u, resamples=400, seed=4)
    assert (again.lo, again.hi) == (many.lo, many.hi) and (other.lo, other.hi) != (many.lo, many.hi)


# ------------------------------------------------------------------------------------------------ randomization
def brute_force_p(units_a, units_b) -> tuple[float, int]:
    """The sign-flip test by its definition: every subset of the differing units swapped between the runs, the
    share of swaps whose |Δ| is at least the observed one (ties within 1e-9)."""
    differing = np.flatnonzero(np.any(units_a.comp != units_b.comp, axis=1))
    observed = abs(units_a.headline() - units_b.headline())
    extreme = 0
    for mask in range(2 ** len(differing)):
        swap = differing[[bool(mask >> j & 1) for j in range(len(differing))]]
        ca, cb = units_a.comp.copy(), units_b.comp.copy()
        ca[swap], cb[swap] = units_b.comp[swap], units_a.comp[swap]
        delta = replace(units_a, comp=ca).headline() - replace(units_b, comp=cb).headline()
        extreme += abs(delta) >= observed - 1e-9 * max(1.0, abs(units_a.headline()), abs(units_b.headline()))
    return extreme / 2 ** len(differing), len(differing)


def test_exact_randomization_equals_the_definition_on_grouped_units_with_strata():
    """MME: two components per unit (both answers right, questions right), strata = categories."""
    a = mme_units({"OCR": 4, "color": 3, "count": 3})
    comp = a.comp.copy()
    comp[[0, 2, 4, 5, 7, 9]] = comp[[1, 3, 6, 4, 8, 0]]          # B answers some images like other images
    b = replace(a, comp=comp)
    p, m = brute_force_p(a, b)
    r = sig.randomization_test(a, b)
    assert (r.exact, r.differing, r.flips, r.error) == (True, m, 0, 0.0) and r.p == pytest.approx(p, abs=1e-12)
    assert 0 < p < 1 and m >= 5


@pytest.mark.parametrize("chunk_elements", [7, 60])
def test_exact_enumeration_in_small_chunks(monkeypatch, chunk_elements):
    a = mme_units({"OCR": 4, "color": 3, "count": 3})
    comp = a.comp.copy()
    comp[[0, 2, 4, 5, 7, 9]] = comp[[1, 3, 6, 4, 8, 0]]
    b = replace(a, comp=comp)
    whole = sig.randomization_test(a, b)
    monkeypatch.setattr(sig, "CHUNK_ELEMENTS", chunk_elements)
    assert sig.randomization_test(a, b).p == pytest.approx(whole.p, abs=1e-12)
    assert whole.p == pytest.approx(brute_force_p(a, b)[0], abs=1e-12) and 0 < whole.p < 1


@pytest.mark.parametrize("chunk_elements", [7, 1400])       # 1 or 7 resamples per chunk (300 = 42 * 7 + 6)
def test_bootstrap_in_small_chunks_draws_the_same(monkeypatch, chunk_elements):
    """Fractional scores (most rows distinct: drawn by position), two strata of MME: any chunk size, same draws."""
    u = mean_units(np.round(np.random.default_rng(0).random(200), 3))
    g = mme_units({"OCR": 31, "color": 30})
    whole = [sig.bootstrap_stats([x], 300, 5)[0] for x in (u, g)]
    monkeypatch.setattr(sig, "CHUNK_ELEMENTS", chunk_elements)
    for x, expected in zip((u, g), whole):
        assert np.allclose(sig.bootstrap_stats([x], 300, 5)[0], expected, rtol=0, atol=1e-9)


def test_exact_randomization_equals_the_definition_on_repeated_fractional_rows():
    a = mean_units([1, 0.5, 0.25, 1, 0.5, 0.3, 0.7, 1, 0])
    b = mean_units([0, 0, 0, 0, 0, 0.3, 0.7, 0.5, 0.25])
    p, m = brute_force_p(a, b)
    r = sig.randomization_test(a, b)
    assert r.p == pytest.approx(p, abs=1e-12) and (r.differing, r.patterns) == (m, 3 * 4 * 2 * 2)


def test_the_exact_test_runs_up_to_max_patterns_inclusive():
    a, b = mean_units([1, 0.5, 0.25, 1]), mean_units([0, 0, 0, 0])      # rows 1, 0.5, 0.25: 3 * 2 * 2 patterns
    assert sig.randomization_test(a, b, max_patterns=12).exact
    assert not sig.randomization_test(a, b, resamples=200, max_patterns=11).exact


def test_no_differing_unit_gives_p_one_exactly():
    a = mean_units([1, 0.5, 0])
    assert sig.randomization_test(a, a) == sig.Randomization(1.0, 0.0, True, 0, 0, 1)


@pytest.mark.parametrize("chunk_elements", [sig.CHUNK_ELEMENTS, 7])
def test_monte_carlo_counts_every_draw_once(monkeypatch, chunk_elements):
    """One differing unit: every swap is as extreme as the observed Δ, so p = (R + 1) / (R + 1) = 1 exactly; forty
    units all the same sign: no draw reaches it, p = 1 / (R + 1) exactly; in any chunk size."""
    monkeypatch.setattr(sig, "CHUNK_ELEMENTS", chunk_elements)
    one = sig.randomization_test(mean_units([1, 0, 0]), mean_units([0, 0, 0]), resamples=500, max_patterns=1)
    assert (one.p, one.exact, one.flips, one.differing) == (1.0, False, 500, 1)
    lo, hi = sig.wilson_interval(1.0, 500, sig.MC_ERROR_LEVEL)
    assert one.error == pytest.approx(max(1.0 - lo, hi - 1.0))
    scores = np.linspace(0.2, 1.0, 40)
    none = sig.randomization_test(mean_units(scores), mean_units(scores - 0.1), resamples=500, max_patterns=1)
    assert (none.p, none.flips, none.differing) == (1 / 501, 500, 40)
    lo, hi = sig.wilson_interval(0.0, 500, sig.MC_ERROR_LEVEL)
    assert none.error == pytest.approx(max(1 / 501 - lo, hi - 1 / 501))


@pytest.mark.parametrize("design", ["ten single rows", "single and repeated rows"])
def test_monte_carlo_agrees_with_the_exact_p(design):
    """Each distinct row flipped the right way: single rows by a random bit each (more than 8: two bytes), repeated
    rows by a binomial count."""
    if design == "ten single rows":     # the two large ones sort last: both must be flipped too (exact p = 1/2)
        diffs = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, -0.9, -0.95])
    else:                               # two pairs flipped one unit at a time, not pair by pair (exact p = 0.68)
        diffs = np.array([0.6, 0.6, -0.5, -0.5, 0.05, -0.1, 0.15, 0.12])
    a, b = mean_units(0.5 + diffs / 2), mean_units(0.5 - diffs / 2)
    exact = sig.randomization_test(a, b)
    mc = sig.randomization_test(a, b, resamples=40_000, seed=11, max_patterns=1)
    assert exact.exact and not mc.exact and exact.p == pytest.approx(0.5 if design == "ten single rows" else 0.6796875)
    assert abs(mc.p - exact.p) <= mc.error + 1 / 40_001, (mc.p, exact.p, mc.error)


def test_different_components_are_refused():
    a = mean_units([1, 0, 1])
    summed = replace(a, rule=replace(a.rule, statistic="sum"))          # same components, another statistic
    ocr = units_from_rows("OCRBench", pd.DataFrame({"index": ["0", "1", "2"], "score": [1.0, 0.0, 1.0]}))
    for other in (summed, ocr):
        with pytest.raises(ValueError, match="the two runs' units have different components"):
            sig.randomization_test(a, other)


def test_bounded_scores():
    assert sig.bounded_scores(mean_units([0, 0.5, 1])).tolist() == [0, 0.5, 1]
    for outside in ([0.5, 1.5], [0.5, 2.0], [-0.5, 0.5]):
        assert sig.bounded_scores(mean_units(outside)) is None
    assert sig.bounded_scores(mean_units([])) is None and sig.bounded_scores(mme_units({"OCR": 2})) is None


def test_wilson_of_one_unit():
    assert sig.wilson_interval(1.0, 1) == pytest.approx((0.20654931, 1.0), abs=1e-6)
    assert sig.wilson_interval(0.0, 1) == pytest.approx((0.0, 0.79345069), abs=1e-6)


# ------------------------------------------------------------------------------------------------ paired fields
def test_paired_without_units():
    r = sig.paired(mean_units([]), mean_units([]), published_delta=1.5)
    assert (r.dataset, r.n, r.test, r.discordant, r.differing, r.published_delta, r.ci_note) == \
        ("TextVQA_VAL", 0, sig.MCNEMAR, None, 0, 1.5, "no units")
    assert all(math.isnan(x) for x in (r.a, r.b, r.delta, r.lo, r.hi, r.se, r.p, r.mde))


def test_paired_fields_with_few_differing_fractional_units():
    a = mean_units([1, 0.5, 0.5, 1] + [0.25] * 36)
    b = mean_units([0.5, 0.5, 0, 1] + [0.25] * 36)
    r = sig.paired(a, b, published_delta=2.0)
    assert (r.n, r.a, r.b, r.published_delta, r.differing) == (40, a.headline(), b.headline(), 2.0, 2)
    assert r.delta == pytest.approx(a.headline() - b.headline()) and r.ci_method == sig.NEWCOMBE
    assert r.ci_note == ("2 differing units (< 30): Newcombe's interval on the mean scores (conservative for "
                         "fractional scores)")
    assert math.isnan(r.mde) and r.mde_note == ("2 differing units (< 8): no Δ these units allow is found with 80% "
                                                "power")
    same = sig.paired(a, a)
    assert same.ci_note == "" and same.mde_note == "no spread between the runs" and same.p == 1.0
    binary = mean_units([1, 0] * 20)
    assert sig.paired(binary, binary).mde_note == "the runs agree on every unit"


def test_paired_with_no_spread_between_the_runs():
    a, b = mean_units([1.0] * 40), mean_units([0.5] * 40)               # every unit differs by the same 0.5
    r = sig.paired(a, b, resamples=300)
    assert r.differing == 40 and r.se == 0.0 and math.isnan(r.mde) and r.mde_note == "no spread between the runs"


def test_paired_when_only_one_run_has_scores_in_zero_one():
    """A score outside [0, 1] in one run: no Newcombe interval, the bootstrap's SE for both."""
    base = np.linspace(0, 1, 40)
    a, b = mean_units(np.append(base, 1.5)), mean_units(np.append(base[::-1], 0.5))
    r = sig.paired(a, b, resamples=300, seed=2)
    deltas = np.subtract(*sig.bootstrap_stats([a, b], 300, sig.seed_for("TextVQA_VAL", 2)))
    assert r.se == pytest.approx(float(np.std(deltas, ddof=1))) and r.ci_method == "paired percentile bootstrap " \
                                                                                  "(300 resamples)"
    assert (r.lo, r.hi) == pytest.approx(sig.percentile_ci(deltas))


def test_paired_grouped_fields():
    a = mme_units({"OCR": 31, "color": 30})
    b = replace(a, comp=np.roll(a.comp, 1, axis=0))
    r = sig.paired(a, b, resamples=300, seed=4)
    deltas = np.subtract(*sig.bootstrap_stats([a, b], 300, sig.seed_for("MME", 4)))
    assert r.se == pytest.approx(float(np.std(deltas, ddof=1))) and r.differing >= 30
    assert (r.lo, r.hi) == pytest.approx(sig.percentile_ci(deltas)) and not math.isnan(r.mde) and r.mde_note == ""
    other = sig.paired(a, b, resamples=300, seed=5)
    assert (other.lo, other.hi) != (r.lo, r.hi)
    two = mme_units({"OCR": 2, "color": 50})                       # two units in a stratum are enough
    r = sig.paired(two, replace(two, comp=np.roll(two.comp, 1, axis=0)), resamples=300)
    assert r.differing >= 30 and not math.isnan(r.lo) and r.ci_method == "paired percentile bootstrap (300 resamples)"
    one = mme_units({"OCR": 1, "color": 30})
    comp = one.comp.copy()
    comp[::2] = comp[::-2][: len(comp[::2])]
    r = sig.paired(one, replace(one, comp=comp), resamples=300)
    assert r.ci_note == f"{sig.TOO_FEW} (a stratum has fewer than 2 units)" and math.isnan(r.lo)
    assert math.isnan(r.mde) and r.mde_note == "too few units to size it"


def test_paired_flips_follow_the_seed_and_max_patterns():
    a = mean_units(np.tile(np.linspace(0.1, 0.9, 5), 6))           # five distinct rows, six units each
    b = mean_units(np.tile([0.3, 0.1, 0.6, 0.5, 0.7], 6))
    exact = sig.paired(a, b, resamples=300)
    assert "exact" in exact.test
    mc = [sig.paired(a, b, resamples=300, seed=s, max_patterns=1) for s in (1, 1, 2)]
    assert all("Monte Carlo" in r.test for r in mc)
    assert mc[0].p == mc[1].p != mc[2].p
