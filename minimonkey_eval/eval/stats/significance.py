"""Paired statistics for comparing runs: seeded vectorised bootstrap CIs, exact McNemar, Holm, MDE, verdicts.

Works on `units.Units` (one row of components per resampling unit, a statistic that turns summed components
into the benchmark's headline). One bootstrap resample draws units with replacement (within each stratum);
a *paired* resample draws the same units for both runs, so the spread of Δ* reflects only the units on which
the runs differ. Resampling is vectorised: per chunk of resamples, `bincount` turns drawn positions into
counts and one matrix product sums the components.

Tests per benchmark: exact McNemar (`scipy.stats.binomtest` on the discordant units) when every unit scores
0/1 and the headline is their mean or sum; otherwise the paired bootstrap p-value (twice the smaller tail of
Δ* beyond 0, +1 smoothed), and no p below 10 units per stratum (no CI below 2). Holm-Bonferroni adjusts across the benchmarks of one comparison; the verdict reads
the adjusted p. The minimum detectable effect (MDE) is the true Δ a two-sided test at α = 0.05 finds with 80%
power at this n and discordance: (z_0.975 + z_0.8) · SE(Δ̂), SE from the discordant count for 0/1 units
(at least one discordant unit assumed) and from the bootstrap otherwise.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from minimonkey_eval.datasets.registry import RIGHT_THRESHOLD

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 20240802          # Mini-Monkey's arXiv date; any fixed number makes every CI reproducible
ALPHA = 0.05
POWER = 0.80
CHUNK_ELEMENTS = 4_000_000       # drawn positions per chunk (memory ~ 8 bytes each)
MAX_GROUPS, MIN_GROUP = 64, 8    # distinct unit rows drawn by one multinomial instead of position by position

MIN_BOOTSTRAP_UNITS = 10         # fewer units in a stratum: no bootstrap p (its tails would be far too short)
BETTER, WORSE, SAME = "better", "worse", "not distinguishable"
MCNEMAR, BOOTSTRAP = "exact McNemar", "paired bootstrap"


def _z(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def seed_for(name: str, seed: int = DEFAULT_SEED) -> int:
    """A per-benchmark seed: the same benchmark gets the same resamples in every report and compare call."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 63)


# ------------------------------------------------------------------------------------------------ resampling
def resampled_sums(comp: np.ndarray, strata: np.ndarray, n_strata: int, resamples: int = DEFAULT_RESAMPLES,
                   seed: int = DEFAULT_SEED) -> np.ndarray:
    """Sums of `comp` (n, k) over `resamples` bootstrap resamples of its rows, drawn with replacement within
    each stratum: array (resamples, n_strata, k)."""
    comp = np.asarray(comp, dtype=np.float64)
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    out = np.zeros((resamples, n_strata, comp.shape[1]), dtype=np.float64)
    for s in range(n_strata):
        rows = comp[strata == s]
        if len(rows):
            out[:, s, :] = _stratum_sums(rows, resamples, rng)
    return out


def _stratum_sums(rows: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap sums of one stratum's rows. Drawing n rows with replacement is drawn in two exact steps:
    how many draws land on each frequent distinct row (one multinomial: paired 0/1 units have at most four
    distinct rows), then, for the draws landing on the remaining rows, which ones (uniform positions, counted
    with bincount, summed with one matrix product per chunk)."""
    n = len(rows)
    uniq, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    order = np.argsort(-counts, kind="stable")
    groups = [g for g in order[:MAX_GROUPS] if counts[g] >= MIN_GROUP]
    rest = rows[~np.isin(inverse, groups)]
    pvals = np.append(counts[groups], len(rest)) / n
    mult = rng.multinomial(n, pvals / pvals.sum(), size=resamples)     # (resamples, groups + 1)
    sums = mult[:, :-1].astype(np.float64) @ uniq[groups] if groups else np.zeros((resamples, rows.shape[1]))
    r = len(rest)
    if r:
        chunk = max(1, CHUNK_ELEMENTS // r)
        for start in range(0, resamples, chunk):
            m = min(chunk, resamples - start)
            k = mult[start:start + m, -1]
            slots = np.repeat(np.arange(m, dtype=np.int32) * r, k)      # m * r <= CHUNK_ELEMENTS + r < 2**31
            slots += rng.integers(0, r, size=len(slots), dtype=np.int32)
            hits = np.bincount(slots, minlength=m * r).reshape(m, r)
            sums[start:start + m] += hits @ rest
    return sums


def bootstrap_stats(units_list, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> list[np.ndarray]:
    """The headline of each `Units` in `units_list` on the *same* resamples (they must share ids and strata):
    one array (resamples,) per entry."""
    first = units_list[0]
    for u in units_list[1:]:
        if not np.array_equal(u.ids, first.ids) or not np.array_equal(u.strata, first.strata):
            raise ValueError(f"{first.dataset}: paired resampling needs the same units in the same order")
    k = [u.comp.shape[1] for u in units_list]
    comp = np.concatenate([u.comp for u in units_list], axis=1)
    sums = resampled_sums(comp, first.strata, first.n_strata, resamples, seed)
    out, at = [], 0
    for u, width in zip(units_list, k):
        out.append(np.asarray(u.statistic(sums[..., at:at + width]), dtype=np.float64))
        at += width
    return out


def percentile_ci(values: np.ndarray, level: float = 1 - ALPHA) -> tuple[float, float]:
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


# ------------------------------------------------------------------------------------------------ one run
@dataclass
class RunCI:
    dataset: str
    n: int                   # resampling units
    headline: float
    lo: float
    hi: float
    se: float
    published: float = math.nan

    @property
    def published_status(self) -> str:
        return ci_status(self.published, self.lo, self.hi)


def run_ci(units, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, published: float = math.nan) -> RunCI:
    (stats,) = bootstrap_stats([units], resamples, seed_for(units.dataset, seed))
    lo, hi = percentile_ci(stats) if units.min_stratum() >= 2 else (math.nan, math.nan)
    return RunCI(units.dataset, len(units.ids), units.headline(), lo, hi, float(np.std(stats, ddof=1)), published)


def ci_status(value: float, lo: float, hi: float) -> str:
    """Where a published number (or published Δ) lies relative to a measured CI."""
    if value is None or math.isnan(value):
        return "not published"
    if math.isnan(lo) or math.isnan(hi):
        return "no CI"
    tol = 1e-9 * max(1.0, abs(value))
    if lo - tol <= value <= hi + tol:
        return "inside CI"
    return "above CI" if value > hi else "below CI"


# ------------------------------------------------------------------------------------------------ two runs
@dataclass
class PairedResult:
    dataset: str
    n: int                   # paired resampling units
    a: float                 # headline of run A on these units
    b: float
    delta: float             # a - b
    lo: float                # 95% paired bootstrap CI of delta
    hi: float
    se: float                # bootstrap SE of delta
    test: str                # MCNEMAR or BOOTSTRAP
    p: float
    discordant: tuple[int, int] | None   # (A right & B wrong, A wrong & B right) for 0/1 units, else None
    differing: int           # units whose components differ between the runs
    mde: float               # minimum detectable |Δ| at 80% power, paper units
    published_delta: float = math.nan
    p_holm: float = math.nan

    @property
    def verdict(self) -> str:
        return verdict(self.delta, self.p_holm if not math.isnan(self.p_holm) else self.p)

    @property
    def published_status(self) -> str:
        return ci_status(self.published_delta, self.lo, self.hi)


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar: binomial test of b successes in b + c discordant pairs at 1/2 (scipy)."""
    from scipy.stats import binomtest

    if b + c == 0:
        return 1.0
    return float(binomtest(int(b), int(b + c), 0.5, alternative="two-sided").pvalue)


def bootstrap_p(deltas: np.ndarray) -> float:
    """Two-sided paired bootstrap p-value: twice the smaller share of resampled Δ* on either side of 0
    (the level at which the percentile CI would just touch 0), +1 smoothed, capped at 1."""
    b = len(deltas)
    below = int(np.count_nonzero(deltas <= 0))
    above = int(np.count_nonzero(deltas >= 0))
    return float(min(1.0, 2 * (min(below, above) + 1) / (b + 1)))


def mde_binary(n: int, discordant: int, per_unit: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """MDE of a paired 0/1 comparison: (z_{1-α/2} + z_power) · sqrt(d) / n · per_unit, d = discordant units
    (at least 1); per_unit turns a fraction of units into paper units (100 for percent, n for a points sum)."""
    if n <= 0:
        return math.nan
    return (_z(1 - alpha / 2) + _z(power)) * math.sqrt(max(discordant, 1)) / n * per_unit


def mde_from_se(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    return (_z(1 - alpha / 2) + _z(power)) * se if se > 0 else math.nan


def paired(units_a, units_b, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
           published_delta: float = math.nan) -> PairedResult:
    """Δ = A − B on the same units: paired bootstrap CI, the test that fits the units, MDE."""
    sa, sb = bootstrap_stats([units_a, units_b], resamples, seed_for(units_a.dataset, seed))
    deltas = sa - sb
    a, b = units_a.headline(), units_b.headline()
    delta = a - b
    lo, hi = percentile_ci(deltas)
    se = float(np.std(deltas, ddof=1))
    differing = int(np.count_nonzero(np.any(units_a.comp != units_b.comp, axis=1)))
    n = len(units_a.ids)
    if units_a.binary and units_b.binary:
        xa, xb = units_a.scores() >= RIGHT_THRESHOLD, units_b.scores() >= RIGHT_THRESHOLD
        disc = (int(np.count_nonzero(xa & ~xb)), int(np.count_nonzero(~xa & xb)))
        p, test = mcnemar_p(*disc), MCNEMAR
        mde = mde_binary(n, sum(disc), units_a.per_unit())
    elif units_a.min_stratum() < MIN_BOOTSTRAP_UNITS:
        disc, p, mde = None, math.nan, mde_from_se(se)
        test = f"{BOOTSTRAP}: no test (< {MIN_BOOTSTRAP_UNITS} units per stratum)"
    else:
        disc, p, test = None, bootstrap_p(deltas), BOOTSTRAP
        mde = mde_from_se(se)
    if units_a.min_stratum() < 2:        # a one-unit stratum never varies: the CI would look falsely exact
        lo = hi = math.nan
    return PairedResult(units_a.dataset, n, a, b, delta, lo, hi, se, test, p, disc, differing, mde,
                        published_delta)


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN entries stay NaN and do not
    count towards the number of tests."""
    p = [float(x) for x in pvalues]
    idx = sorted((i for i, x in enumerate(p) if not math.isnan(x)), key=lambda i: p[i])
    m = len(idx)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def adjust(results: list[PairedResult]) -> list[PairedResult]:
    """Fill `p_holm` across the benchmarks of one comparison."""
    for r, q in zip(results, holm([r.p for r in results])):
        r.p_holm = q
    return results


def verdict(delta: float, p: float, alpha: float = ALPHA) -> str:
    if math.isnan(p) or p >= alpha or delta == 0 or math.isnan(delta):
        return SAME
    return BETTER if delta > 0 else WORSE
