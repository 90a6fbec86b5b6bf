"""Speed of the paired bootstrap (prints numbers; no assertions): 5,000 questions, 10,000 resamples, per shape."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from minimonkey_eval.eval.stats import significance as sig
from minimonkey_eval.eval.stats.units import units_from_rows


def units(name, scores):
    return units_from_rows(name, pd.DataFrame({"index": [str(i) for i in range(len(scores))], "score": scores}))


def main(n: int = 5000) -> None:
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


if __name__ == "__main__":
    main()
