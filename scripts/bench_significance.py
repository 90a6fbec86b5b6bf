"""Speed and small-sample behaviour of the paired statistics (prints numbers; no assertions).

    python scripts/bench_significance.py              # speed: 5,000 questions, 10,000 resamples, per shape
    python scripts/bench_significance.py --coverage   # the simulations behind significance.py's thresholds

--coverage prints, per setting, the false-positive rate of the randomization test (and of the paired bootstrap p
it replaced) on true nulls, and the coverage of the 95% interval that `run_ci` / `paired` show (and of the plain
percentile bootstrap) by n, on simulated scores with a known truth. `--reps` sets the datasets per cell
(default 400, about 10 minutes on one core).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from minimonkey_eval.eval.stats import significance as sig
from minimonkey_eval.eval.stats.units import Units, rule_for, units_from_rows


def units(name, scores):
    return units_from_rows(name, pd.DataFrame({"index": [str(i) for i in range(len(scores))], "score": scores}))


def speed(n: int = 5000) -> None:
    import scipy.stats  # noqa: F401 - imported once here, not inside the first timing

    rng = np.random.default_rng(0)
    a01 = (rng.random(n) < 0.75).astype(float)
    b01 = np.where(rng.random(n) < 0.85, a01, (rng.random(n) < 0.7).astype(float))
    anls_a = np.where(rng.random(n) < 0.2, rng.random(n), a01)          # 20% fractional ANLS values
    anls_b = np.where(rng.random(n) < 0.2, rng.random(n), b01)
    cont_a, cont_b = rng.random(n), rng.random(n)                       # every unit distinct (worst case)
    for label, name, a, b in (("0/1 accuracy (McNemar)", "AI2D_TEST", a01, b01),
                              ("ANLS, 20% fractional", "DocVQA_VAL", anls_a, anls_b),
                              ("all units distinct", "DocVQA_VAL", cont_a, cont_b)):
        ua, ub = units(name, a), units(name, b)
        t0 = time.perf_counter()
        r = sig.paired(ua, ub)
        t1 = time.perf_counter()
        sig.run_ci(ua)
        t2 = time.perf_counter()
        print(f"{label:28s} n={n} resamples={sig.DEFAULT_RESAMPLES}: paired {t1 - t0:.3f} s, one run {t2 - t1:.3f} s "
              f"(Δ {r.delta:+.2f}, CI [{r.lo:+.2f}, {r.hi:+.2f}], {r.test} p={r.p:.3g})")


# ------------------------------------------------------------------------------------------------ simulations
def fast_units(dataset: str, scores) -> Units:
    rule = rule_for(dataset)
    scores = np.asarray(scores, dtype=float)
    comp = np.stack([scores, np.ones_like(scores)], axis=1) if rule.statistic == "mean" else scores[:, None]
    return Units(rule.dataset, np.arange(len(scores)).astype(str).astype(object), comp,
                 np.zeros(len(scores), dtype=np.int64), ("all",), rule)


def score_pmf(kind: str, mean: float) -> tuple[np.ndarray, np.ndarray]:
    """ANLS-like: 0/1 with 10-15% values in [0.55, 0.95]; VQA-like: {0, 1/3, 2/3, 1}."""
    if kind == "anls":
        frac = 0.15 if 0.2 <= mean <= 0.95 else min(0.10, mean)
        vals = np.array([0.0, 0.55, 0.65, 0.75, 0.85, 0.95, 1.0])
        p1 = mean - frac / 5 * vals[1:6].sum()
        return vals, np.array([1 - frac - p1, *[frac / 5] * 5, p1])
    f = min(0.15, 1.6 * mean, 1.6 * (1 - mean))
    return np.array([0, 1 / 3, 2 / 3, 1]), np.array([1 - f / 2 - mean, f / 2, f / 2, mean - f / 2])


def draw(rng, kind, mean, size):
    vals, p = score_pmf(kind, mean)
    return vals[rng.choice(len(vals), size=size, p=p)]


def fractional(rng, size):
    u = rng.random(size)
    return np.where(u < 0.3, 0.0, np.where(u < 0.6, 1.0, 0.5 + 0.5 * rng.random(size)))


def null_pair(rng, n, m):
    a = fractional(rng, n)
    b = a.copy()
    pos = rng.choice(n, size=m, replace=False)
    xa, xb = fractional(rng, m), fractional(rng, m)
    while np.any(same := xa == xb):
        xa[same], xb[same] = fractional(rng, int(same.sum())), fractional(rng, int(same.sum()))
    a[pos], b[pos] = xa, xb
    return a, b


def inside(lo, hi, truth) -> bool:
    return lo - 1e-9 <= truth <= hi + 1e-9


def size_table(reps: int, rng) -> None:
    print(f"\n## Randomization test on true nulls: 300 fractional units, m differ ({reps} datasets each)")
    for m in (6, 12, 24):
        rand = boot = 0
        for k in range(reps):
            ua, ub = (fast_units("DocVQA_VAL", x) for x in null_pair(rng, 300, m))
            rand += sig.randomization_test(ua, ub, 2000, k).p < 0.05
            boot += sig.bootstrap_p(np.subtract(*sig.bootstrap_stats([ua, ub], 2000, k))) < 0.05
        print(f"m={m:2d}: randomization rejects {rand / reps:.3f}, old paired bootstrap p {boot / reps:.3f}")


def binary_exact_tables() -> None:
    from scipy.stats import binom, multinomial

    print("\n## Wilson (0/1, one run): exact coverage, mean and min over true p in [0.05, 0.95]")
    grid = np.linspace(0.05, 0.95, 181)
    for n in (10, 20, 50, 100, 300):
        x = np.arange(n + 1)
        cis = np.array([sig.wilson_interval(k / n, n) for k in x])
        cov = [binom.pmf(x, n, p)[(cis[:, 0] <= p) & (p <= cis[:, 1])].sum() for p in grid]
        print(f"n={n:4d}: mean {np.mean(cov):.3f}, min {np.min(cov):.3f}")
    print("\n## Newcombe (0/1, paired): exact coverage over six (both, A only, B only, neither) tables: min / mean")
    cells = ((0.60, 0.10, 0.05, 0.25), (0.45, 0.08, 0.08, 0.39), (0.70, 0.05, 0.02, 0.23),
             (0.80, 0.04, 0.01, 0.15), (0.30, 0.15, 0.10, 0.45), (0.85, 0.03, 0.03, 0.09))
    for n in (10, 20, 30, 50, 100):
        tables = np.array([(a, b, c, n - a - b - c) for a in range(n + 1) for b in range(n + 1 - a)
                           for c in range(n + 1 - a - b)])
        cis = []
        for a, b, c, _ in tables:
            xa = np.r_[np.ones(a + b, bool), np.zeros(n - a - b, bool)]
            xb = np.r_[np.ones(a, bool), np.zeros(b, bool), np.ones(c, bool), np.zeros(n - a - b - c, bool)]
            cis.append(sig.newcombe_interval(xa, xb))
        cis = np.array(cis)
        cov = [multinomial.pmf(tables, n, p)[(cis[:, 0] <= p[1] - p[2] + 1e-12)
                                             & (p[1] - p[2] - 1e-12 <= cis[:, 1])].sum() for p in cells]
        print(f"n={n:4d}: min {np.min(cov):.3f}, mean {np.mean(cov):.3f}")


DISTRIBUTIONS = [(k, m) for k in ("anls", "vqa") for m in (0.1, 0.5, 0.9, 0.97)]


def single_table(reps: int, rng) -> None:
    print(f"\n## Fractional scores, one run: coverage of the interval shown (share via Wilson) | plain percentile "
          f"bootstrap ({reps} datasets per cell)")
    for kind, mean in DISTRIBUTIONS:
        cells = []
        for n in (10, 20, 50, 100, 300, 1000):
            shown = wilson = boot = 0
            for k in range(reps):
                u = fast_units("DocVQA_VAL", draw(rng, kind, mean, n))
                ci = sig.run_ci(u, resamples=1000, seed=k)
                shown += inside(ci.lo, ci.hi, 100 * mean)
                wilson += ci.method == sig.WILSON
                (stats,) = sig.bootstrap_stats([u], 1000, k)
                boot += inside(*sig.percentile_ci(stats), 100 * mean)
            cells.append(f"n={n}: {shown / reps:.3f} ({wilson / reps:.0%}) | {boot / reps:.3f}")
        print(f"{kind} mean {mean}: " + "; ".join(cells))


def paired_table(reps: int, rng) -> None:
    print(f"\n## Fractional scores, paired: B = A except on a share q of units redrawn with a mean 0.05 lower; "
          f"coverage of the interval shown (share via Newcombe) | plain paired bootstrap; m = mean differing units "
          f"({reps} datasets per cell)")
    for kind, mean in DISTRIBUTIONS[:3] + DISTRIBUTIONS[4:7]:
        cells = []
        for n, q in ((10, 1.0), (20, 1.0), (50, 1.0), (300, 0.03), (300, 0.1), (300, 0.3), (1000, 0.05)):
            shown = newc = boot = 0
            ms = []
            for k in range(reps):
                a = draw(rng, kind, mean, n)
                b = np.where(rng.random(n) < q, draw(rng, kind, mean - 0.05, n), a)
                ua, ub = fast_units("TextVQA_VAL", a), fast_units("TextVQA_VAL", b)
                r = sig.paired(ua, ub, resamples=1000, seed=k, max_patterns=1)
                shown += inside(r.lo, r.hi, 5 * q)
                newc += r.ci_method == sig.NEWCOMBE
                ms.append(r.differing)
                boot += inside(*sig.percentile_ci(np.subtract(*sig.bootstrap_stats([ua, ub], 1000, k))), 5 * q)
            cells.append(f"n={n} m~{np.mean(ms):.0f}: {shown / reps:.3f} ({newc / reps:.0%}) | {boot / reps:.3f}")
        print(f"{kind} mean {mean}: " + "; ".join(cells))


def pope_table(reps: int, rng) -> None:
    """POPE F1 (a ratio of sums): paired bootstrap coverage by differing units; truth from 2 million questions."""
    print(f"\n## POPE F1, paired (grouped statistic): coverage of the bootstrap CI shown from "
          f"{sig.MIN_BOOTSTRAP_UNITS} differing units; share with a CI ({reps} datasets per cell)")

    def draw_pope(n, q):
        truth = rng.random(n) < 0.5
        right_a = rng.random(n) < np.where(truth, 0.80, 0.92)
        flip = rng.random(n) < q
        right_b = np.where(flip, rng.random(n) < np.where(truth, 0.75, 0.92), right_a)
        return truth, right_a, right_b

    def f1(truth, right):
        tp, fp, fn = np.sum(truth & right), np.sum(~truth & ~right), np.sum(truth & ~right)
        return 200 * tp / (2 * tp + fp + fn)

    def pope(truth, right):
        comp = np.stack([truth & right, ~truth & ~right, truth & ~right], axis=1).astype(float)
        rule = rule_for("POPE")
        return Units(rule.dataset, np.arange(len(truth)).astype(str).astype(object), comp,
                     np.zeros(len(truth), dtype=np.int64), ("all",), rule)

    for n, q in ((300, 0.3), (300, 0.5), (1000, 0.2), (1000, 0.5), (3000, 0.1)):
        big = draw_pope(2_000_000, q)
        truth_delta = f1(big[0], big[1]) - f1(big[0], big[2])
        shown = covered = 0
        for k in range(reps):
            t, ra, rb = draw_pope(n, q)
            r = sig.paired(pope(t, ra), pope(t, rb), resamples=1000, seed=k, max_patterns=1)
            if not np.isnan(r.lo):
                shown += 1
                covered += inside(r.lo, r.hi, truth_delta)
        print(f"n={n} q={q}: CI shown {shown / reps:.0%}, coverage {covered / max(shown, 1):.3f}")


def coverage(reps: int) -> None:
    rng = np.random.default_rng(20240802)
    t0 = time.perf_counter()
    size_table(reps, rng)
    binary_exact_tables()
    single_table(reps, rng)
    paired_table(reps, rng)
    pope_table(reps, rng)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument("--reps", type=int, default=400)
    args = parser.parse_args()
    coverage(args.reps) if args.coverage else speed()
