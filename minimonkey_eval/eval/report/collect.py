"""Report, step 1 (collect): run folders -> the report's tables, no files written.

Input is a work dir holding one folder per run (written by the runner; file names from ``runfiles.layout``):
the run record (read by ``runfiles.record``), ``summary.csv`` (one row, one column per registry ``PAPER_COLUMNS``
entry, empty = not run),
``{DATASET}_score.csv`` (long: dataset, metric, value; metric ``headline`` = paper units) and
``{DATASET}_samples.csv`` (index, question, answer, prediction, score, image_path, failed, reason).
``collect_report(work_dir, tolerance) -> ReportData``: paper table, deltas, reproduction gaps, breakdowns, per-sample
diff. Missing numbers stay NaN (rendered empty), never 0, and are never flagged. ``ReportContext`` is what every
section of the report is built from (the collected data, where files go, what the sections share).
"""
from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from minimonkey_eval.datasets.registry import (
    BENCHMARKS,
    DEFAULT_GAP_TOLERANCE,
    PAPER_COLUMNS,
    RIGHT_THRESHOLD,
    get_benchmark,
)
from minimonkey_eval.eval.report import published as pub
from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.eval.runfiles.record import read_run_record
from minimonkey_eval.eval.samples_sheet import read_samples_csv
from minimonkey_eval.models.registry import PAIR_BASE, PAIR_NEW, get_model, model_names

logger = logging.getLogger(__name__)

DEMO_TAG = "demo: random tiny model"
DEMO_BANNER = ("DEMO: this report includes runs with random tiny demo weights (rows marked "
               f"'{DEMO_TAG}'); their numbers are meaningless.")

_ROUND = 6  # differences are rounded to this many decimals to drop float noise (75.2 - 74.7 == 0.5)

SHEET_NAMES: tuple[str, ...] = ("table", "deltas", "gaps", "breakdowns", "per-sample diff", "runs")
_VLMEVAL_ORDER = {b.vlmeval_name: i for i, b in enumerate(BENCHMARKS)}


# ----------------------------------------------------------------------------------------------- data model
@dataclass
class Run:
    run_name: str
    model: str
    label: str
    msac: bool
    scm: bool
    demo: bool
    path: Path
    finished: float                     # epoch seconds (timings.finished, else the run record's mtime)
    meta: dict[str, Any]
    scores: pd.Series                   # PAPER_COLUMNS -> headline in paper units, NaN = not run
    subscores: dict[str, pd.Series]     # vlmeval dataset name -> metric -> value (headline included)

    @property
    def display(self) -> str:
        """Row/column label everywhere a run appears: label [run_name], demo runs tagged."""
        name = f"{self.label} [{self.run_name}]"
        return f"{name} ({DEMO_TAG})" if self.demo else name


@dataclass
class ReportData:
    runs: list[Run]
    table: pd.DataFrame          # label, source, run_name, demo, *PAPER_COLUMNS
    deltas: pd.DataFrame         # comparison, minuend, subtrahend (displays), minuend_run, subtrahend_run, demo, *cols
    # long: run_name, label, model, ..., benchmark, measured, published, gap, tolerance, flagged
    gaps: pd.DataFrame
    breakdowns: dict[str, pd.DataFrame]   # vlmeval name -> metric rows x run-display columns
    sample_diff: pd.DataFrame    # see sample_diff_columns()
    pair: tuple[Run | None, Run | None]   # (Mini-Monkey run, InternVL2-2B run) used for deltas / diff
    tolerance: dict[str, float]  # per PAPER_COLUMNS column

    @property
    def has_demo(self) -> bool:
        return any(r.demo for r in self.runs)


@dataclass
class ReportPaths:
    out_dir: Path
    markdown: Path
    xlsx: Path
    html: Path
    scores_chart: Path
    delta_chart: Path
    landscape_charts: list[Path] = field(default_factory=list)  # the landscape section: params vs score per benchmark
    # what the report read and computed, for whoever logs it next (the trackers): not read or computed again
    runs: list[Run] = field(default_factory=list)               # one per run name, as on the page
    run_cis: list = field(default_factory=list)                 # significance_section.RunCIRow per run x benchmark

    @property
    def charts(self) -> list[Path]:
        return [self.scores_chart, self.delta_chart, *self.landscape_charts]


T = TypeVar("T")


@dataclass
class ReportContext:
    """What a section is built from: the collected data, the output paths, the work dir, the ``--published`` choice,
    and ``once(fn)``: a result several sections share (the significance statistics), computed on first use."""
    data: ReportData
    paths: ReportPaths
    work_dir: Path
    published: str | list[str] | None = None
    _shared: dict[Callable, Any] = field(default_factory=dict, repr=False)

    def once(self, fn: Callable[[ReportContext], T]) -> T:
        if fn not in self._shared:
            self._shared[fn] = fn(self)
        return self._shared[fn]


def pair_labels() -> tuple[str, str]:
    """Report labels of the compared pair (deltas, per-sample diff, charts), read from the model registry now."""
    return get_model(PAIR_NEW).label, get_model(PAIR_BASE).label


def sample_diff_columns() -> tuple[str, ...]:
    new, base = pair_labels()
    return ("dataset", "index", "right", "question", "answer", f"{new} prediction", f"{new} score",
            f"{base} prediction", f"{base} score", "image_path")


# ----------------------------------------------------------------------------------------------- reading runs
def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "y", "t")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def _finished(meta: dict[str, Any], run_json: Path) -> float:
    t = (meta.get("timings") or {}).get("finished") if isinstance(meta.get("timings"), dict) else None
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return float(t)
    if isinstance(t, str) and t.strip():
        try:
            return float(t)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(t.strip().replace("Z", "+00:00")).timestamp()
        except ValueError:
            logger.warning("%s: unreadable timings.finished %r; using file mtime", run_json, t)
    return run_json.stat().st_mtime


def _read_scores(run_dir: Path) -> dict[str, pd.Series]:
    out: dict[str, pd.Series] = {}
    # Only our per-dataset sheets ({DATASET}_score.csv); vlmeval's own {model}_{DATASET}_score.csv files sit beside
    # them.
    for dataset in (b.vlmeval_name for b in BENCHMARKS):
        f = RunLayout(run_dir).score_csv(dataset)
        if not f.is_file():
            continue
        df = pd.read_csv(f, dtype={"metric": str})
        if not {"metric", "value"} <= set(df.columns):
            logger.warning("%s: missing metric/value columns; skipped", f)
            continue
        s = pd.Series(pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=float),
                      index=df["metric"].astype(str).str.strip().to_list(), dtype=float)
        out[dataset] = s[~s.index.duplicated(keep="first")]
    return out


def _read_summary(run_dir: Path) -> tuple[pd.Series, bool]:
    scores = pd.Series(math.nan, index=list(PAPER_COLUMNS), dtype=float)
    f = RunLayout(run_dir).summary_csv
    if not f.exists():
        return scores, False
    df = pd.read_csv(f)
    if df.empty:
        return scores, False
    row = df.iloc[0]
    for col in df.columns:
        try:
            b = get_benchmark(str(col))
        except ValueError:
            continue
        if b.column in scores.index:
            scores[b.column] = pd.to_numeric(pd.Series([row[col]]), errors="coerce").iloc[0]
    return scores, _as_bool(row.get("demo", False))


def load_run(run_dir: Path) -> Run:
    """Read one run folder. Headlines come from summary.csv; a column it leaves empty is filled from the
    dataset's ``_score.csv`` 'headline' row when there is one."""
    layout = RunLayout(run_dir)
    meta = read_run_record(run_dir).to_dict()   # a file of the wrong shape: RunRecordError (a ValueError)
    scores, summary_demo = _read_summary(run_dir)
    subscores = _read_scores(run_dir)
    for dataset, s in subscores.items():
        try:
            col = get_benchmark(dataset).column
        except ValueError:
            continue
        if col not in scores.index or "headline" not in s.index or math.isnan(s["headline"]):
            continue
        if math.isnan(scores[col]):
            scores[col] = s["headline"]
        elif abs(scores[col] - s["headline"]) > 1e-6:
            logger.warning("%s: summary.csv %s=%s but %s_score.csv headline=%s; using summary.csv",
                           run_dir.name, col, scores[col], dataset, s["headline"])
    # one sheet per dataset: a sheet of another shape gets the folder skipped
    for sheet in map(layout.samples_csv, layout.sampled_datasets()):
        read_samples_csv(sheet)
    model = str(meta.get("model") or "")
    return Run(
        run_name=str(meta.get("run_name") or run_dir.name),
        model=model,
        label=str(meta.get("label") or model or run_dir.name),
        msac=_as_bool(meta.get("msac")),
        scm=_as_bool(meta.get("scm")),
        demo=_as_bool(meta.get("demo")) or summary_demo,
        path=run_dir,
        finished=_finished(meta, layout.run_json),
        meta=meta,
        scores=scores,
        subscores=subscores,
    )


def load_runs(work_dir: Path, skip: Path | None = None) -> list[Run]:
    """Every ``{work_dir}/*/run.json`` folder, in report order (model, MSAC, SCM, finish time). Each run is read
    once: a folder that is a symlink (an alias of another run folder, or of one elsewhere) is never followed, and of
    two folders whose run.json names the same run (a ``cp -r`` backup) the one named like the run is kept (else the
    first by name); each left out is one warning naming it. An unreadable folder is one warning too."""
    runs: list[Run] = []
    for d in sorted(Path(work_dir).iterdir()):
        if d.is_symlink():
            if RunLayout(d).run_json.exists():
                logger.warning("skipping run folder %s: a symlink (to %s); run folders are read once, never through "
                               "a link", d, os.readlink(d))
            continue
        if not d.is_dir() or (skip is not None and d.resolve() == skip.resolve()):
            continue
        if not RunLayout(d).is_run_folder():
            continue
        try:
            runs.append(load_run(d))
        except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
            logger.warning("skipping run folder %s: %s", d, e)
    runs = _one_per_name(runs)
    order = {m: i for i, m in enumerate(model_names())}
    runs.sort(key=lambda r: (order.get(r.model, len(order)), r.model, r.msac, r.scm, r.finished, r.run_name))
    return runs


def _one_per_name(runs: list[Run]) -> list[Run]:
    """One run per run name: the folder named like the run, else the first by folder name; a warning per other."""
    by_name: dict[str, list[Run]] = {}
    for r in runs:
        by_name.setdefault(r.run_name, []).append(r)
    kept = []
    for name, same in by_name.items():
        keep = next((r for r in same if r.path.name == name), same[0])
        kept.append(keep)
        for r in same:
            if r is not keep:
                logger.warning("skipping run folder %s: its run.json names run %r, which %s already holds (a copy "
                               "of that run?); rename or remove one of them", r.path, name, keep.path)
    return kept


def _samples(run: Run, dataset: str) -> pd.DataFrame | None:
    f = RunLayout(run.path).samples_csv(dataset)
    if not f.exists():
        return None
    return read_samples_csv(f).drop_duplicates("index", keep="first").set_index("index")


# ----------------------------------------------------------------------------------------------- building
def resolve_tolerance(tolerance: Mapping[str, float] | float | None = None) -> dict[str, float]:
    """Per-column flag tolerance: the registry's ``Benchmark.tolerance`` (``DEFAULT_GAP_TOLERANCE`` where a benchmark
    has none) overridden by ``tolerance`` (keys: report column or VLMEvalKit name, or 'default' for the benchmarks
    without their own; a bare number replaces every column's)."""
    if isinstance(tolerance, (int, float)):
        return {c: float(tolerance) for c in PAPER_COLUMNS}
    given = {("default" if k == "default" else get_benchmark(k).column): float(v) for k, v in (tolerance or {}).items()}
    default = given.get("default", DEFAULT_GAP_TOLERANCE)
    out = {}
    for c in PAPER_COLUMNS:
        own = get_benchmark(c).tolerance
        out[c] = given.get(c, default if own is None else own)
    return out


def _pick(runs: list[Run], model: str, msac: bool | None, scm: bool | None) -> Run | None:
    """The run to compare: real weights beat demo weights, then the most recently finished."""
    cands = [r for r in runs if r.model == model
             and (msac is None or r.msac == msac) and (scm is None or r.scm == scm)]
    if not cands:
        return None
    return max(cands, key=lambda r: (not r.demo, r.finished, r.run_name))


def select_pair(runs: list[Run]) -> tuple[Run | None, Run | None]:
    """(Mini-Monkey with MSAC, without SCM; InternVL2-2B without MSAC, preferring no SCM)."""
    new = _pick(runs, PAIR_NEW, msac=True, scm=False)
    base = _pick(runs, PAIR_BASE, msac=False, scm=False) or _pick(runs, PAIR_BASE, msac=False, scm=None)
    return new, base


def _diff(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a.astype(float) - b.astype(float)).round(_ROUND)


def _table(runs: list[Run]) -> pd.DataFrame:
    pubrows = pub.published_rows()
    rows = [{"label": r["label"], "source": r["source"], "run_name": "", "demo": False,
             **{c: r[c] for c in PAPER_COLUMNS}} for _, r in pubrows.iterrows()]
    for r in runs:
        label = f"{r.label} ({DEMO_TAG})" if r.demo else r.label
        rows.append({"label": label, "source": f"measured: {r.run_name}", "run_name": r.run_name,
                     "demo": r.demo, **r.scores.to_dict()})
    df = pd.DataFrame(rows, columns=["label", "source", "run_name", "demo", *PAPER_COLUMNS])
    df[list(PAPER_COLUMNS)] = df[list(PAPER_COLUMNS)].astype(float)
    return df


def _deltas(runs: list[Run], pair: tuple[Run | None, Run | None]) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []

    def add(comparison: str, a: Run, b: Run) -> None:
        rows.append({"comparison": comparison, "minuend": a.display, "subtrahend": b.display,
                     "minuend_run": a.run_name, "subtrahend_run": b.run_name,
                     "demo": a.demo or b.demo, **_diff(a.scores, b.scores).to_dict()})

    new, base = pair
    new_label, base_label = pair_labels()
    if new is not None and base is not None:
        add(f"{new_label} − {base_label} (measured)", new, base)
    ref_new, ref_base = pub.published_reference(PAIR_NEW), pub.published_reference(PAIR_BASE)
    (card_key, row_new), (base_key, row_base) = get_model(PAIR_NEW).published[0], get_model(PAIR_BASE).published[0]
    card = pub.read_card(card_key)  # both rows of the same table: the paper's own delta
    if card_key == base_key and row_new in card.index and row_base in card.index and ref_new and ref_base:
        rows.append({"comparison": f"{new_label} − {base_label} (published)",
                     "minuend": f"{row_new} (published)", "subtrahend": f"{row_base} (published)",
                     "minuend_run": "", "subtrahend_run": "", "demo": False,
                     **_diff(card.loc[row_new], card.loc[row_base]).to_dict()})
    models = list(dict.fromkeys(r.model for r in runs))
    for m in models:
        on, off = _pick(runs, m, msac=True, scm=False), _pick(runs, m, msac=False, scm=False)
        if on is not None and off is not None:
            add(f"{m}: MSAC on − off", on, off)
    for m in models:
        for msac in (True, False):
            on, off = _pick(runs, m, msac=msac, scm=True), _pick(runs, m, msac=msac, scm=False)
            if on is not None and off is not None:
                add(f"{m}{' + MSAC' if msac else ''}: SCM on − off", on, off)
    df = pd.DataFrame(rows, columns=["comparison", "minuend", "subtrahend", "minuend_run", "subtrahend_run", "demo",
                                     *PAPER_COLUMNS])
    df[list(PAPER_COLUMNS)] = df[list(PAPER_COLUMNS)].astype(float)
    return df


GAP_COLUMNS = ("run_name", "label", "display", "model", "msac", "scm", "demo", "published_config",
               "benchmark", "measured", "published", "published_source", "gap", "tolerance", "flagged")


def _gaps(runs: list[Run], tol: dict[str, float]) -> pd.DataFrame:
    rows = []
    for r in runs:
        ref = pub.published_reference(r.model)
        if ref is None:
            continue
        values, sources = ref
        config = pub.published_config(r.model)
        for c in PAPER_COLUMNS:
            measured, published = float(r.scores[c]), float(values[c])
            gap = round(measured - published, _ROUND)  # NaN if either is missing
            rows.append({"run_name": r.run_name, "label": r.label, "display": r.display, "model": r.model,
                         "msac": r.msac, "scm": r.scm, "demo": r.demo,
                         "published_config": config == (r.msac, r.scm),
                         "benchmark": c, "measured": measured, "published": published,
                         "published_source": sources[c], "gap": gap, "tolerance": tol[c],
                         "flagged": (not math.isnan(gap)) and abs(gap) > tol[c]})
    return pd.DataFrame(rows, columns=list(GAP_COLUMNS))


def _breakdowns(runs: list[Run]) -> dict[str, pd.DataFrame]:
    datasets = {d for r in runs for d, s in r.subscores.items() if any(m != "headline" for m in s.index)}
    out: dict[str, pd.DataFrame] = {}
    for d in sorted(datasets, key=lambda d: (_VLMEVAL_ORDER.get(d, len(_VLMEVAL_ORDER)), d)):
        have = [r for r in runs if d in r.subscores]
        metrics: list[str] = []
        for r in have:
            metrics += [m for m in r.subscores[d].index if m not in metrics]
        metrics.sort(key=lambda m: m != "headline")  # headline first, then first-seen order (stable sort)
        df = pd.DataFrame({r.display: r.subscores[d].reindex(metrics) for r in have}, index=metrics, dtype=float)
        df.index.name = "metric"
        out[d] = df
    return out


def _outcome(df: pd.DataFrame) -> dict[str, bool | None]:
    """index -> True (right), False (wrong) or None (unknown: no score and not failed).
    A failed sample without a score counts as wrong."""
    out: dict[str, bool | None] = {}
    for i, score, failed in zip(df.index, df["score"], df["failed"]):
        if isinstance(score, float) and math.isnan(score):
            out[i] = False if failed else None
        else:
            out[i] = bool(score >= RIGHT_THRESHOLD)
    return out


def _prediction(row: pd.Series) -> str:
    if row["failed"] and (row.get("score") is None or math.isnan(row["score"])):
        return f"[failed: {row.get('reason', '')}]"
    return row["prediction"]


def _sample_diff(pair: tuple[Run | None, Run | None]) -> pd.DataFrame:
    new, base = pair
    new_label, base_label = pair_labels()
    columns = list(sample_diff_columns())
    rows: list[dict[str, Any]] = []
    if new is None or base is None:
        return pd.DataFrame(columns=columns)
    datasets = sorted(set(RunLayout(new.path).sampled_datasets()) & set(RunLayout(base.path).sampled_datasets()),
                      key=lambda d: (_VLMEVAL_ORDER.get(d, len(_VLMEVAL_ORDER)), d))
    for d in datasets:
        a, b = _samples(new, d), _samples(base, d)
        if a is None or b is None:
            continue
        oa, ob = _outcome(a), _outcome(b)
        common = [i for i in a.index if i in b.index]
        for i in sorted(common, key=_natural_key):
            ra, rb = oa[i], ob[i]
            if ra is None or rb is None or ra == rb:
                continue
            sa, sb = a.loc[i], b.loc[i]
            def pick(k, sa=sa, sb=sb):
                return sa.get(k) or sb.get(k) or ""
            rows.append({"dataset": d, "index": i, "right": new_label if ra else base_label,
                         "question": pick("question"), "answer": pick("answer"),
                         f"{new_label} prediction": _prediction(sa), f"{new_label} score": sa["score"],
                         f"{base_label} prediction": _prediction(sb), f"{base_label} score": sb["score"],
                         "image_path": pick("image_path")})
    df = pd.DataFrame(rows, columns=columns)
    for c in (f"{new_label} score", f"{base_label} score"):
        df[c] = df[c].astype(float)
    return df


def _natural_key(s: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(s)) if t)


def collect_report(work_dir: str | Path, tolerance: Mapping[str, float] | float | None = None,
                   skip: Path | None = None) -> ReportData:
    """Read every run under ``work_dir`` and build the report's tables (no files written)."""
    runs = load_runs(Path(work_dir), skip=skip)
    tol = resolve_tolerance(tolerance)
    pair = select_pair(runs)
    return ReportData(runs=runs, table=_table(runs), deltas=_deltas(runs, pair), gaps=_gaps(runs, tol),
                      breakdowns=_breakdowns(runs), sample_diff=_sample_diff(pair), pair=pair, tolerance=tol)


