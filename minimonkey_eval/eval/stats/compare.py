"""``minimonkey-eval compare RUN_A RUN_B``: is A − B real? Paired tests of two run folders, benchmark by benchmark.

`compare_runs(a, b)` pairs the two runs' resampling units (`units.py`) per benchmark, checks that the units
recompute each run's recorded headline, and returns Δ = A − B with its 95% CI, the test
(exact McNemar / paired randomization), Holm-adjusted p across the benchmarks compared, MDE, verdict, the
published Δ where both runs are in their model card's setting, and the flip list (samples one run gets right
and the other wrong). Runs over different samples are refused unless ``intersect`` (then only the common
samples are compared, and the notes say how many). `format_table` renders it for the terminal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from minimonkey_eval.datasets.registry import DEFAULT_DATASETS, RIGHT_THRESHOLD, get_benchmark
from minimonkey_eval.eval.report.collect import Run, load_run
from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.eval.samples_sheet import SamplesError
from minimonkey_eval.eval.stats import significance as sig
from minimonkey_eval.eval.stats.units import (
    UnitsError,
    circular_main,
    load_units,
    read_samples,
    unit_rows,
    units_from_rows,
)

HEADLINE_TOLERANCE = 1e-6   # relative: the units must give back the recorded headline to this precision
FLIP_COLUMNS = ("dataset", "index", "right", "question", "answer", "prediction A", "score A", "prediction B",
                "score B", "image_path")


class SampleMismatch(UnitsError):
    """The two runs were not made over the same samples."""


def read_run(path) -> Run:
    """The run folder through the report's reader (`report.collect.load_run`, over the one run record reader); a
    folder that is not a readable run is a one-line `UnitsError`."""
    path = Path(path)
    layout = RunLayout(path)
    if not layout.is_run_folder():
        raise UnitsError(f"{path}: not a run folder (no {layout.run_json.name}); pass folders written by "
                         "`minimonkey-eval run`")
    try:
        return load_run(path)
    except SamplesError:   # names its own file and column
        raise
    except (OSError, ValueError) as exc:
        raise UnitsError(f"{layout.run_json}: unreadable ({exc}); rerun the run or pass another folder") from None


@dataclass
class Comparison:
    a: Run
    b: Run
    results: list[sig.PairedResult]
    units: dict[str, str]                                   # dataset -> what one unit is
    skipped: dict[str, str] = field(default_factory=dict)   # dataset -> why not compared
    notes: list[str] = field(default_factory=list)
    flips: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(FLIP_COLUMNS)))
    resamples: int = sig.DEFAULT_RESAMPLES
    seed: int = sig.DEFAULT_SEED


def check_headline(units, run: Run) -> None:
    """The units must give back the headline the run recorded; otherwise no statistic is shown."""
    recorded = run.subscores.get(units.dataset)
    want = float(recorded["headline"]) if recorded is not None and "headline" in recorded.index else math.nan
    got = units.headline()
    if math.isnan(want) or abs(want - got) > HEADLINE_TOLERANCE * max(1.0, abs(want)):
        raise UnitsError(f"{units.dataset}: units of {run.run_name} give {got:.6g}, the run recorded "
                         f"{want:.6g}; rescore the run")


def published_delta(a: Run, b: Run, dataset: str) -> float:
    """Published A − B, when both runs use the setting their model card reports (else NaN)."""
    from minimonkey_eval.eval.report import published as pub

    column = get_benchmark(dataset).column
    values = []
    for run in (a, b):
        ref = pub.published_reference(run.model)
        if ref is None or pub.published_config(run.model) != (run.msac, run.scm):
            return math.nan
        values.append(float(ref[0][column]))
    return round(values[0] - values[1], 6)


def _sample_keys(samples: pd.DataFrame) -> set[str]:
    return set(samples["index"])


def _check_same_questions(d: str, sa: pd.DataFrame, sb: pd.DataFrame, common: set[str]) -> None:
    if "question" not in sa.columns or "question" not in sb.columns:
        return
    qa, qb = sa.set_index("index")["question"], sb.set_index("index")["question"]
    for k in sorted(common):
        if str(qa[k]) != str(qb[k]):
            raise SampleMismatch(f"{d}: sample {k} asks different questions in the two runs (different TSVs?); "
                             "compare runs made from the same benchmark files")


def _outcome(score: float, failed: bool) -> bool | None:
    if math.isnan(score):
        return False if failed else None
    return bool(score >= RIGHT_THRESHOLD)


def flip_rows(d: str, sa: pd.DataFrame, sb: pd.DataFrame, keys: set[str]) -> list[dict]:
    """Samples one run gets right and the other wrong (circular rotations folded into their group's row)."""
    a, b = sa.drop_duplicates("index").set_index("index"), sb.drop_duplicates("index").set_index("index")
    circular = get_benchmark(d).circular
    rows = []
    for k in sa["index"]:
        if k not in keys or (circular and not circular_main(k)):
            continue
        ra, rb = a.loc[k], b.loc[k]
        oa, ob = _outcome(float(ra["score"]), bool(ra["failed"])), _outcome(float(rb["score"]), bool(rb["failed"]))
        if oa is None or ob is None or oa == ob:
            continue
        def pick(c, ra=ra, rb=rb):
            return str(ra.get(c, "") or rb.get(c, "") or "")
        rows.append({"dataset": d, "index": k, "right": "A" if oa else "B", "question": pick("question"),
                     "answer": pick("answer"), "prediction A": _shown(ra), "score A": float(ra["score"]),
                     "prediction B": _shown(rb), "score B": float(rb["score"]), "image_path": pick("image_path")})
    return rows


def _shown(row) -> str:
    if bool(row["failed"]) and math.isnan(float(row["score"])):
        return f"[failed: {row.get('reason', '')}]"
    return str(row.get("prediction", ""))


def _paired_units(d: str, a: Run, b: Run, keys: set[str] | None):
    out = []
    for run in (a, b):
        full = load_units(run.path, d, run.model)
        check_headline(full, run)
        if keys is None:
            out.append(full)
            continue
        rows = unit_rows(run.path, d, run.model)
        out.append(units_from_rows(d, rows[rows["index"].isin(keys)]))
    ua, ub = out
    common = [u for u in ua.ids if u in set(ub.ids)]
    if len(common) != len(ua.ids) or len(common) != len(ub.ids):
        raise UnitsError(f"{d}: the runs' units differ ({len(ua.ids)} vs {len(ub.ids)}, {len(common)} common)")
    return ua.take(common), ub.take(common)


def compare_runs(a_dir: Run | Path, b_dir: Run | Path, datasets=None, intersect: bool = False,
                 resamples: int = sig.DEFAULT_RESAMPLES,
                 seed: int = sig.DEFAULT_SEED, strict: bool = True) -> Comparison:
    """Pair run A with run B on every benchmark both have (or `datasets`). A benchmark whose units cannot be
    read is skipped with its reason; runs over different samples raise `SampleMismatch` unless `intersect`
    (strict=False, the report: they are skipped too)."""
    a, b = (r if isinstance(r, Run) else read_run(r) for r in (a_dir, b_dir))
    names = [get_benchmark(n).vlmeval_name for n in (datasets or DEFAULT_DATASETS)]
    comp = Comparison(a, b, [], {}, resamples=resamples, seed=seed)
    flips: list[dict] = []
    for d in names:
        have = [RunLayout(r.path).samples_csv(d).exists() for r in (a, b)]
        if not all(have):
            if any(have):
                comp.skipped[d] = f"only run {'A' if have[0] else 'B'} has it"
            continue
        try:
            sa, sb = read_samples(a.path, d), read_samples(b.path, d)
            ka, kb = _sample_keys(sa), _sample_keys(sb)
            common = ka & kb
            _check_same_questions(d, sa, sb, common)
            keys = None
            if ka != kb:
                if not common:
                    raise SampleMismatch(f"{d}: the runs share no sample")
                if not intersect:
                    raise SampleMismatch(f"{d}: the runs were made over different samples (A {len(ka)}, B {len(kb)}, "
                                     f"{len(common)} in common); pass --intersect to compare the common ones")
                keys = common
                comp.notes.append(f"{d}: compared the {len(common)} samples both runs have "
                                  f"(A has {len(ka)}, B has {len(kb)})")
            ua, ub = _paired_units(d, a, b, keys)
            comp.results.append(sig.paired(ua, ub, resamples, seed, published_delta(a, b, d)))
            comp.units[d] = str(ua.rule.unit)
            comp.notes += [f"{d}: {n}" for n in ua.notes]
            flips += flip_rows(d, sa, sb, keys if keys is not None else ka)
        except UnitsError as exc:
            if strict and isinstance(exc, SampleMismatch):
                raise
            comp.skipped[d] = str(exc).removeprefix(f"{d}: ")
    sig.adjust(comp.results)
    comp.flips = pd.DataFrame(flips, columns=list(FLIP_COLUMNS))
    return comp


# ----------------------------------------------------------------------------------------------- terminal
def fmt(v: float, d: int = 2, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:+.{d}f}" if sign and round(v, d) != 0 else f"{v:.{d}f}"


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def result_row(r: sig.PairedResult) -> dict[str, str]:
    d = get_benchmark(r.dataset).stat_decimals
    disc = f" ({r.discordant[0]}:{r.discordant[1]})" if r.discordant is not None else ""
    return {"Benchmark": get_benchmark(r.dataset).column, "n": str(r.n), "A": fmt(r.a, d), "B": fmt(r.b, d),
            "Δ A−B": fmt(r.delta, d, sign=True), "95% CI": f"[{fmt(r.lo, d, True)}, {fmt(r.hi, d, True)}]",
            "test": r.test + disc, "p": fmt_p(r.p), "p Holm": fmt_p(r.p_holm), "MDE 80%": fmt(r.mde, d),
            "verdict": r.verdict, "published Δ": fmt(r.published_delta, d, sign=True),
            "published Δ vs CI": r.published_status}


def format_table(c: Comparison) -> str:
    rows = [result_row(r) for r in c.results]
    lines = [f"A = {c.a.display}", f"B = {c.b.display}",
             f"Δ = A − B in paper units ({c.resamples} resamples / flips, seed {c.seed}); McNemar discordant counts "
             "as (A only : B only); verdict at Holm-adjusted p < 0.05.", sig.METHOD_NOTE, ""]
    if rows:
        headers = list(rows[0])
        width = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
        left = {"Benchmark", "test", "verdict", "published Δ vs CI"}
        line = lambda r: "  ".join(r[h].ljust(width[h]) if h in left else r[h].rjust(width[h])  # noqa: E731
                                   for h in headers).rstrip()
        lines += [line({h: h for h in headers}), "  ".join("-" * width[h] for h in headers)]
        lines += [line(r) for r in rows]
    else:
        lines.append("(no benchmark compared)")
    if c.units:
        lines += ["", "Resampling units: " + "; ".join(f"{get_benchmark(d).column}: {u}" for d, u in c.units.items())]
    lines += [f"note: {n}" for n in c.notes]
    lines += [f"note ({get_benchmark(r.dataset).column}): {r.note}" for r in c.results if r.note]
    lines += [f"skipped {get_benchmark(d).column}: {why}" for d, why in c.skipped.items()]
    if len(c.flips):
        counts = c.flips.groupby("dataset", sort=False)["right"].value_counts().unstack(fill_value=0)
        lines.append("flips (only A right / only B right): " + ", ".join(
            f"{get_benchmark(d).column} {int(r.get('A', 0))}/{int(r.get('B', 0))}" for d, r in counts.iterrows()))
    return "\n".join(lines)
