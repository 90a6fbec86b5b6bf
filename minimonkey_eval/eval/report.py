"""Report: run folders -> paper table, deltas, reproduction gaps, breakdowns, per-sample diff -> md / xlsx / html / png.

Input is a work dir holding one folder per run (written by the runner):
``run.json``, ``summary.csv`` (one row, one column per registry ``PAPER_COLUMNS`` entry, empty = not run),
``{DATASET}_score.csv`` (long: dataset, metric, value; metric ``headline`` = paper units) and
``{DATASET}_samples.csv`` (index, question, answer, prediction, score, image_path, failed, reason).

Two steps, each one call:
``collect_report(work_dir, tolerance) -> ReportData`` (pure: reads files, builds DataFrames) and
``build_report(work_dir, out_dir, tolerance) -> ReportPaths`` (collects, then writes every output).
Missing numbers stay NaN (rendered empty), never 0, and are never flagged.
"""
from __future__ import annotations

import base64
import html
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from minimonkey_eval.datasets.registry import BENCHMARKS, PAPER_COLUMNS, get_benchmark
from minimonkey_eval.eval import published as pub
from minimonkey_eval.eval.authors_setting import oom_fallbacks_text
from minimonkey_eval.models.registry import PAIR_BASE, PAIR_NEW, get_model, model_names

logger = logging.getLogger(__name__)

DEMO_TAG = "demo: random tiny model"
DEMO_BANNER = ("DEMO: this report includes runs with random tiny demo weights (rows marked "
               f"'{DEMO_TAG}'); their numbers are meaningless.")

# |measured - published| above this is flagged; per report column, 'default' for the rest.
DEFAULT_TOLERANCE: dict[str, float] = {"default": 0.5, "MME": 5.0, "OCRBench": 5.0}
RIGHT_THRESHOLD = 0.5  # per-sample score >= this counts as right

# Harness model names, in report order; the pair compared in the deltas / per-sample diff.
PAIR_NEW_NAME, PAIR_BASE_NAME = get_model(PAIR_NEW).label, get_model(PAIR_BASE).label

# Display names of report columns (everything else shows as the registry column name).
COLUMN_TITLES: dict[str, str] = {"MMBench_EN": "MMB-EN", "MMBench_CN": "MMB-CN"}
# Chart normalisation to a common 0-100 scale.
CHART_SCALE: dict[str, float] = {"MME": 28.0, "OCRBench": 10.0}
# Decimals shown for values and for differences (deltas, gaps).
_VALUE_DECIMALS = {"MME": 1, "OCRBench": 0}
_DIFF_DECIMALS = {"MME": 2, "OCRBench": 1}
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
    finished: float                     # epoch seconds (timings.finished, else run.json mtime)
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
    gaps: pd.DataFrame           # long: run_name, label, model, ..., benchmark, measured, published, gap, tolerance, flagged
    breakdowns: dict[str, pd.DataFrame]   # vlmeval name -> metric rows x run-display columns
    sample_diff: pd.DataFrame    # see SAMPLE_DIFF_COLUMNS
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
    landscape_charts: list[Path] = field(default_factory=list)  # report_landscape: params vs score per benchmark

    @property
    def charts(self) -> list[Path]:
        return [self.scores_chart, self.delta_chart, *self.landscape_charts]


SAMPLE_DIFF_COLUMNS = (
    "dataset", "index", "right", "question", "answer",
    f"{PAIR_NEW_NAME} prediction", f"{PAIR_NEW_NAME} score",
    f"{PAIR_BASE_NAME} prediction", f"{PAIR_BASE_NAME} score", "image_path",
)


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
    # Only our per-dataset sheets ({DATASET}_score.csv); vlmeval's own {model}_{DATASET}_score.csv files sit beside them.
    for dataset in (b.vlmeval_name for b in BENCHMARKS):
        f = run_dir / f"{dataset}_score.csv"
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
    f = run_dir / "summary.csv"
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
    run_json = run_dir / "run.json"
    meta = json.loads(run_json.read_text(encoding="utf-8"))
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
    model = str(meta.get("model") or "")
    return Run(
        run_name=str(meta.get("run_name") or run_dir.name),
        model=model,
        label=str(meta.get("label") or model or run_dir.name),
        msac=_as_bool(meta.get("msac")),
        scm=_as_bool(meta.get("scm")),
        demo=_as_bool(meta.get("demo")) or summary_demo,
        path=run_dir,
        finished=_finished(meta, run_json),
        meta=meta,
        scores=scores,
        subscores=subscores,
    )


def load_runs(work_dir: Path, skip: Path | None = None) -> list[Run]:
    """Every ``{work_dir}/*/run.json`` folder, in report order (model, MSAC, SCM, finish time)."""
    runs: list[Run] = []
    for d in sorted(p for p in Path(work_dir).iterdir() if p.is_dir()):
        if skip is not None and d.resolve() == skip.resolve():
            continue
        if not (d / "run.json").exists():
            continue
        try:
            runs.append(load_run(d))
        except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
            logger.warning("skipping run folder %s: %s", d, e)
    order = {m: i for i, m in enumerate(model_names())}
    runs.sort(key=lambda r: (order.get(r.model, len(order)), r.model, r.msac, r.scm, r.finished, r.run_name))
    return runs


def _samples(run: Run, dataset: str) -> pd.DataFrame | None:
    f = run.path / f"{dataset}_samples.csv"
    if not f.exists():
        return None
    df = pd.read_csv(f, dtype={"index": str, "question": str, "answer": str, "prediction": str,
                               "image_path": str, "reason": str}, keep_default_na=False, na_values={"score": [""]})
    df["score"] = pd.to_numeric(df["score"], errors="coerce") if "score" in df.columns else math.nan
    df["failed"] = df["failed"].map(_as_bool) if "failed" in df.columns else False
    return df.drop_duplicates("index", keep="first").set_index("index")


# ----------------------------------------------------------------------------------------------- building
def resolve_tolerance(tolerance: Mapping[str, float] | float | None = None) -> dict[str, float]:
    """Per-column flag tolerance: DEFAULT_TOLERANCE overridden by ``tolerance`` (keys: report column or
    VLMEvalKit name, or 'default'; a bare number replaces the default for every column)."""
    merged = dict(DEFAULT_TOLERANCE)
    if isinstance(tolerance, (int, float)):
        merged = {"default": float(tolerance)}
    elif tolerance:
        for k, v in tolerance.items():
            key = "default" if k == "default" else get_benchmark(k).column
            merged[key] = float(v)
    return {c: merged.get(c, merged["default"]) for c in PAPER_COLUMNS}


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
    if new is not None and base is not None:
        add(f"{PAIR_NEW_NAME} − {PAIR_BASE_NAME} (measured)", new, base)
    ref_new, ref_base = pub.published_reference(PAIR_NEW), pub.published_reference(PAIR_BASE)
    (card_key, row_new), (base_key, row_base) = get_model(PAIR_NEW).published[0], get_model(PAIR_BASE).published[0]
    card = pub.read_card(card_key)  # both rows of the same table: the paper's own delta
    if card_key == base_key and row_new in card.index and row_base in card.index and ref_new and ref_base:
        rows.append({"comparison": f"{PAIR_NEW_NAME} − {PAIR_BASE_NAME} (published)",
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
    rows: list[dict[str, Any]] = []
    if new is None or base is None:
        return pd.DataFrame(columns=list(SAMPLE_DIFF_COLUMNS))
    datasets = sorted({f.name[: -len("_samples.csv")] for f in new.path.glob("*_samples.csv")}
                      & {f.name[: -len("_samples.csv")] for f in base.path.glob("*_samples.csv")},
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
            pick = lambda k: sa.get(k) or sb.get(k) or ""  # noqa: E731
            rows.append({"dataset": d, "index": i, "right": PAIR_NEW_NAME if ra else PAIR_BASE_NAME,
                         "question": pick("question"), "answer": pick("answer"),
                         f"{PAIR_NEW_NAME} prediction": _prediction(sa), f"{PAIR_NEW_NAME} score": sa["score"],
                         f"{PAIR_BASE_NAME} prediction": _prediction(sb), f"{PAIR_BASE_NAME} score": sb["score"],
                         "image_path": pick("image_path")})
    df = pd.DataFrame(rows, columns=list(SAMPLE_DIFF_COLUMNS))
    for c in (f"{PAIR_NEW_NAME} score", f"{PAIR_BASE_NAME} score"):
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


# ----------------------------------------------------------------------------------------------- rendering model
@dataclass
class Cell:
    value: Any                 # raw value written to xlsx (None = empty cell)
    text: str                  # shown in md / html
    number_format: str | None = None
    tone: str = ""             # 'pos' | 'neg' | ''
    bold: bool = False
    numeric: bool = False


@dataclass
class Block:
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _text(v: Any) -> Cell:
    if _isnan(v):
        return Cell(None, "")
    if isinstance(v, bool):
        return Cell("yes" if v else "no", "yes" if v else "no")
    return Cell(str(v), str(v))


def _value(col: str, v: float) -> Cell:
    d = _VALUE_DECIMALS.get(col, 1)
    if _isnan(v):
        return Cell(None, "", numeric=True)
    return Cell(float(v), f"{v:.{d}f}", "0" if d == 0 else "0." + "0" * d, numeric=True)


def _delta(col: str, v: float, flagged: bool = False) -> Cell:
    d = _DIFF_DECIMALS.get(col, 2)
    if _isnan(v):
        return Cell(None, "", numeric=True)
    z = "0" if d == 0 else "0." + "0" * d
    tone = "pos" if v > 0 else "neg" if v < 0 else ""
    text = f"{v:+.{d}f}" if round(v, d) != 0 else f"{0:.{d}f}"
    return Cell(float(v), text, f"+{z};-{z};{z}", tone=tone, bold=flagged, numeric=True)


def _plain_number(v: float) -> Cell:
    if _isnan(v):
        return Cell(None, "", numeric=True)
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return Cell(float(v), text, "0.0#" if text != f"{v:.0f}" else "0", numeric=True)


def _col_title(c: str) -> str:
    return COLUMN_TITLES.get(c, c)


def _blocks(data: ReportData) -> dict[str, list[Block]]:
    cols = list(PAPER_COLUMNS)
    titles = [_col_title(c) for c in cols]
    units = ("Units as in the Mini-Monkey paper: MME = perception + reasoning sum (0-2800), "
             "OCRBench = 0-1000, all others percent (0-100). Empty = not run / not published.")
    split_note = "Split caveats: " + "; ".join(f"{_col_title(k)}: {v}" for k, v in pub.SPLIT_NOTES.items()) + "."

    table = Block("Paper table", ["Model", "Source", *titles],
                  [[_text(r["label"]), _text(r["source"]), *[_value(c, r[c]) for c in cols]]
                   for _, r in data.table.iterrows()], [units, split_note])

    deltas = Block("Deltas", ["Comparison", "Runs (minuend − subtrahend)", *titles],
                   [[_text(f"{r['comparison']} ({DEMO_TAG})" if r["demo"] else r["comparison"]),
                     _text(f"{r['minuend_run']} − {r['subtrahend_run']}" if r["minuend_run"] else "Mini-Monkey card"),
                     *[_delta(c, r[c]) for c in cols]] for _, r in data.deltas.iterrows()],
                   ["Minuend − subtrahend per benchmark, paper units. Pair: " + _pair_text(data.pair) + ".",
                    "MSAC on − off / SCM on − off compare runs of the same model (most recent of each)."])

    gap_rows: list[list[Cell]] = []
    g = data.gaps
    for run_name in dict.fromkeys(g["run_name"]):
        sub = g[g["run_name"] == run_name].set_index("benchmark")
        first = sub.iloc[0]
        gap_rows.append([_text(first["display"]), _text(first["model"]), _text(bool(first["published_config"])),
                         *[_delta(c, sub.loc[c, "gap"], bool(sub.loc[c, "flagged"])) for c in cols]])
    if gap_rows:
        gap_rows.append([_text("flag when |gap| >"), _text(""), _text(""),
                         *[_plain_number(data.tolerance[c]) for c in cols]])
    tol_text = ", ".join(f"{_col_title(c)} {data.tolerance[c]:g}" for c in cols)
    gaps = Block("Reproduction gaps (measured − published)", ["Run", "Model", "Published config", *titles],
                 gap_rows,
                 ["Measured − published for every run whose model has a published row; bold = |gap| above "
                  f"tolerance ({tol_text}).",
                  "Published config = the run uses the setting the card reports (Mini-Monkey: MSAC on, SCM off; "
                  "InternVL2 family: MSAC off, SCM off); other rows show ablation effects, not reproduction gaps.",
                  "InternVL2-2B published = Mini-Monkey card, MMMU/MMB from the Mini-InternVL card. " + split_note])

    breakdowns = []
    for d, df in data.breakdowns.items():
        breakdowns.append(Block(d, ["Metric", *df.columns],
                                [[_text(m), *[_plain_number(v) for v in row]] for m, row in df.iterrows()],
                                ["'headline' is the number in the paper table; other rows as the scorer reports."]))

    sd = data.sample_diff
    diff_cols = list(SAMPLE_DIFF_COLUMNS)
    diff = Block(f"Per-sample diff: {PAIR_NEW_NAME} vs {PAIR_BASE_NAME}", diff_cols,
                 [[_text(r[c]) if not c.endswith(" score") else _plain_number(r[c]) for c in diff_cols]
                  for _, r in sd.iterrows()],
                 [f"Samples one run gets right (score ≥ {RIGHT_THRESHOLD}) and the other wrong; a failed sample "
                  "without a score counts as wrong. Pair: " + _pair_text(data.pair) + "."])

    counts_rows = []
    if not sd.empty:
        counts = sd.groupby("dataset", sort=False)["right"].value_counts().unstack(fill_value=0)
        counts = counts.reindex(columns=[PAIR_NEW_NAME, PAIR_BASE_NAME], fill_value=0)
        counts_rows = [[_text(d), _plain_number(float(r[PAIR_NEW_NAME])), _plain_number(float(r[PAIR_BASE_NAME]))]
                       for d, r in counts.iterrows()]
    diff_counts = Block("Per-sample diff: counts", ["Dataset", f"only {PAIR_NEW_NAME} right",
                                                     f"only {PAIR_BASE_NAME} right"], counts_rows)

    run_rows = []
    for r in data.runs:
        m = r.meta
        run_rows.append([_text(r.run_name), _text(f"{r.label} ({DEMO_TAG})" if r.demo else r.label),
                         _text(r.model), _text(r.msac), _text(r.scm), _text(m.get("tile_profile")), _text(r.demo),
                         _text(m.get("dtype")), _text(oom_fallbacks_text(m)),
                         _text(_finished_text(r)),
                         _text(len(m.get("datasets") or [])), _text(str(m.get("checkpoint_sha256") or "")[:12]),
                         _text(str(m.get("git_commit") or "")[:10]), _text(m.get("model_path"))])
    runs = Block("Runs", ["Run", "Label", "Model", "MSAC", "SCM", "Tile profile", "Demo", "Dtype",
                          "OOM 'A' fallbacks (failed, not reproduced)", "Finished",
                          "Datasets", "Checkpoint sha256", "Git commit", "Model path"], run_rows)
    return {"table": [table], "deltas": [deltas], "gaps": [gaps], "breakdowns": breakdowns,
            "per-sample diff": [diff_counts, diff], "runs": [runs]}


def _finished_text(r: Run) -> str:
    t = r.meta.get("timings", {}).get("finished") if isinstance(r.meta.get("timings"), dict) else None
    if t not in (None, ""):
        return str(t)
    return datetime.fromtimestamp(r.finished, timezone.utc).strftime("%Y-%m-%d %H:%M UTC (run.json mtime)")


def _pair_text(pair: tuple[Run | None, Run | None]) -> str:
    new, base = pair
    return (f"{PAIR_NEW_NAME} = {new.display if new else 'no MSAC-on/SCM-off run'}, "
            f"{PAIR_BASE_NAME} = {base.display if base else 'no MSAC-off run'}")


# ----------------------------------------------------------------------------------------------- markdown
def _md_escape(s: str, limit: int | None = None) -> str:
    s = " ".join(str(s).split())
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("\\", "\\\\").replace("|", "\\|")


def _md_block(b: Block, level: int = 2, max_rows: int | None = None, clip: int | None = None,
              heading: bool = True) -> str:
    out = [f"{'#' * level} {b.title}", ""] if heading else []
    for n in b.notes if heading else ():  # one paragraph per note
        out += [n, ""]
    if not b.rows:
        out += ["_(none)_", ""]
        return "\n".join(out)
    numeric = [all(row[i].numeric for row in b.rows) for i in range(len(b.headers))]
    out.append("| " + " | ".join(_md_escape(h) for h in b.headers) + " |")
    out.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    rows = b.rows if max_rows is None else b.rows[:max_rows]
    for row in rows:
        cells = []
        for c in row:
            t = _md_escape(c.text, clip)
            cells.append(f"**{t}**" if c.bold and t else t)
        out.append("| " + " | ".join(cells) + " |")
    if max_rows is not None and len(b.rows) > max_rows:
        out.append(f"\n_… {len(b.rows) - max_rows} more rows in report.xlsx._")
    out.append("")
    return "\n".join(out)


def _markdown(data: ReportData, blocks: dict[str, list[Block]], charts: ReportPaths, work_dir: Path) -> str:
    parts = ["# Mini-Monkey reproduction report", ""]
    if data.has_demo:
        parts += [f"> **{DEMO_BANNER}**", ""]
    parts += [f"{len(data.runs)} measured run(s) from `{work_dir}`. Also in this folder: `report.xlsx` "
              "(every table, full per-sample diff), `report.html` (tables + charts).", ""]
    parts.append(_md_block(blocks["table"][0]))
    parts.append(_md_block(blocks["deltas"][0]))
    parts.append(_md_block(blocks["gaps"][0]))
    parts += ["## Charts", "",
              f"![Scores, measured vs published]({charts.scores_chart.name})", "",
              f"![Mini-Monkey − InternVL2-2B per benchmark]({charts.delta_chart.name})", ""]
    parts += ["## Breakdowns", ""]
    parts += [_md_block(b, level=3) for b in blocks["breakdowns"]] or ["_(no sub-scores)_", ""]
    counts, diff = blocks["per-sample diff"]
    sd = data.sample_diff
    parts += [f"## {diff.title}", ""] + [x for n in diff.notes for x in (n, "")]
    if sd.empty:
        parts += ["_(none)_", ""]
    else:
        parts.append(_md_block(counts, heading=False))
        per = 10
        for d in dict.fromkeys(sd["dataset"]):
            idx = [i for i, ds in enumerate(sd["dataset"]) if ds == d]
            sub = Block(d, diff.headers, [diff.rows[i] for i in idx])
            parts.append(_md_block(sub, level=3, max_rows=per, clip=80))
    parts.append(_md_block(blocks["runs"][0]))
    return "\n".join(parts).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------- xlsx
def _write_xlsx(path: Path, data: ReportData, blocks: dict[str, list[Block]]) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    fills = {"pos": PatternFill("solid", fgColor="C6EFCE"), "neg": PatternFill("solid", fgColor="FFC7CE")}
    header_fill = PatternFill("solid", fgColor="D9D9D9")
    banner_fill = PatternFill("solid", fgColor="FFF2CC")
    bottom = Border(bottom=Side(style="thin"))
    wb = Workbook()
    wb.remove(wb.active)
    for name in SHEET_NAMES:
        ws = wb.create_sheet(name)
        row = 1
        if data.has_demo:
            ws.cell(row, 1, DEMO_BANNER).font = Font(bold=True, color="9C0006")
            ws.cell(row, 1).fill = banner_fill
            row += 2
        widths: dict[int, int] = {}
        header_row = None
        for b in blocks[name]:
            ws.cell(row, 1, b.title).font = Font(bold=True, size=13)
            row += 1
            for n in b.notes:
                ws.cell(row, 1, n).font = Font(italic=True, color="595959")
                row += 1
            header_row = header_row or row
            for j, h in enumerate(b.headers, 1):
                c = ws.cell(row, j, h)
                c.font, c.fill, c.border = Font(bold=True), header_fill, bottom
                c.alignment = Alignment(wrap_text=True, vertical="bottom")
                widths[j] = max(widths.get(j, 8), min(len(h) + 2, 14))
            row += 1
            if not b.rows:
                ws.cell(row, 1, "(none)").font = Font(italic=True)
                row += 1
            for cells in b.rows:
                for j, cell in enumerate(cells, 1):
                    c = ws.cell(row, j, cell.value)
                    if cell.number_format:
                        c.number_format = cell.number_format
                    if cell.tone:
                        c.fill = fills[cell.tone]
                    if cell.bold:
                        c.font = Font(bold=True)
                    widths[j] = max(widths.get(j, 8), min(len(cell.text) + 2, 60 if not cell.numeric else 14))
                row += 1
            row += 1
        for j, w in widths.items():
            ws.column_dimensions[get_column_letter(j)].width = w
        if header_row and name in ("table", "deltas", "gaps"):
            ws.freeze_panes = ws.cell(header_row + 1, 2)
    wb.save(path)


# ----------------------------------------------------------------------------------------------- charts
def _norm(col: str, v: float) -> float:
    return v / CHART_SCALE.get(col, 1.0)


def _tick(col: str) -> str:
    t = _col_title(col)
    return f"{t} (÷{CHART_SCALE[col]:g})" if col in CHART_SCALE else t


_SCALE_NOTE = "0-100 scale: MME ÷ 28, OCRBench ÷ 10, others percent"


def _chart_scores(path: Path, data: ReportData) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = list(PAPER_COLUMNS)
    new, base = data.pair
    series = []  # (label, values, colour, hatch)
    for model, name, run, colours in ((PAIR_BASE, PAIR_BASE_NAME, base, ("#9ecae1", "#2171b5")),
                                      (PAIR_NEW, PAIR_NEW_NAME, new, ("#fdbe85", "#d94701"))):
        ref = pub.published_reference(model)
        pv = ref[0] if ref else pd.Series(math.nan, index=cols)
        series.append((f"{name} published", [_norm(c, pv[c]) for c in cols], colours[0], "//"))
        if run is not None:
            tag = f" ({DEMO_TAG})" if run.demo else ""
            series.append((f"{name} measured [{run.run_name}]{tag}", [_norm(c, run.scores[c]) for c in cols],
                           colours[1], ""))
        else:
            series.append((f"{name} measured: no run", [math.nan] * len(cols), colours[1], ""))
    demo = any(r is not None and r.demo for r in data.pair)

    fig = Figure(figsize=(16, 6.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    n = len(series)
    width = 0.8 / n
    for k, (label, vals, colour, hatch) in enumerate(series):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(cols))]
        ax.bar(xs, [0 if math.isnan(v) else v for v in vals], width, label=label, color=colour,
               hatch=hatch, edgecolor="white" if not hatch else "#555555", linewidth=0.4)
        for x, v in zip(xs, vals):
            if math.isnan(v):  # make "missing" visibly different from a zero bar
                ax.text(x, 1.5, "not run" if "measured" in label else "not publ.", rotation=90, ha="center",
                        va="bottom", fontsize=7, color="#777777")
            elif v == 0:  # a measured zero has no visible bar: say it
                ax.text(x, 0.5, "0", ha="center", va="bottom", fontsize=8, color=colour, fontweight="bold")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([_tick(c) for c in cols], rotation=35, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(cols) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"score ({_SCALE_NOTE})")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    title = f"{PAIR_NEW_NAME} vs {PAIR_BASE_NAME}: measured vs published per benchmark"
    if demo:
        title = f"DEMO: random tiny model — {title}"
    ax.set_title(title, fontsize=13, pad=34, color="#9c0006" if demo else "black")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=n, frameon=False, fontsize=9)
    fig.savefig(path)


def _chart_delta(path: Path, data: ReportData) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cols = list(PAPER_COLUMNS)
    measured = data.deltas[data.deltas["comparison"].str.endswith("(measured)")]
    published = data.deltas[data.deltas["comparison"].str.endswith("(published)")]
    mv = [_norm(c, measured.iloc[0][c]) if not measured.empty else math.nan for c in cols]
    pv = [_norm(c, published.iloc[0][c]) if not published.empty else math.nan for c in cols]
    new, base = data.pair
    demo = any(r is not None and r.demo for r in data.pair)

    fig = Figure(figsize=(16, 6.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = range(len(cols))
    colours = ["#31a354" if v > 0 else "#de2d26" if v < 0 else "#969696" for v in mv]
    ax.bar(xs, [0 if math.isnan(v) else v for v in mv], 0.55, color=colours, zorder=2)
    for x, v in zip(xs, mv):
        if v == 0:  # a zero delta has no bar height: draw it as a dash on the zero line
            ax.plot([x - 0.275, x + 0.275], [0, 0], color="#969696", linewidth=4, zorder=2.5,
                    solid_capstyle="butt")
    finite = [v for v in mv + pv if not math.isnan(v)]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    rng = max(hi - lo, 1.0)
    pad = 0.04 * rng  # keeps value labels clear of the published-delta diamonds
    for x, v, p in zip(xs, mv, pv):
        if math.isnan(v):  # on the side of the zero line away from the published diamond
            below = math.isnan(p) or p >= 0
            ax.text(x, -pad if below else pad, "no data", ha="center", va="top" if below else "bottom",
                    fontsize=8, color="#777777")
        elif v >= 0:
            top = max(v, p) if not math.isnan(p) and p >= 0 else v
            ax.text(x, top + pad, f"{v:+.1f}", ha="center", va="bottom", fontsize=8)
        else:
            bottom = min(v, p) if not math.isnan(p) and p < 0 else v
            ax.text(x, bottom - pad, f"{v:+.1f}", ha="center", va="top", fontsize=8)
    ax.scatter([x for x, v in zip(xs, pv) if not math.isnan(v)], [v for v in pv if not math.isnan(v)],
               marker="D", s=42, color="black", zorder=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylim(lo - 0.18 * rng if lo < 0 else -0.1 * rng, hi + 0.18 * rng)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([_tick(c) for c in cols], rotation=35, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(cols) - 0.4)
    ax.set_ylabel(f"Δ {PAIR_NEW_NAME} − {PAIR_BASE_NAME}\n({_SCALE_NOTE})")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    handles = [Line2D([], [], marker="D", color="black", linestyle="", label="published Δ (Mini-Monkey card)")]
    if new is not None and base is not None:
        mlabel = f"measured Δ: [{new.run_name}] − [{base.run_name}]" + (f" ({DEMO_TAG})" if demo else "")
        handles = [Patch(facecolor="#31a354", label=f"{mlabel}, positive"),
                   Patch(facecolor="#de2d26", label=f"{mlabel}, negative"),
                   Patch(facecolor="#969696", label="measured Δ = 0"), *handles]
    else:
        handles.append(Patch(facecolor="none", edgecolor="none", label="no measured pair: no bars"))
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2 if len(handles) > 3 else len(handles), frameon=False, fontsize=9)
    title = f"{PAIR_NEW_NAME} − {PAIR_BASE_NAME} per benchmark (bars and numbers: measured; diamonds: published)"
    if demo:
        title = f"DEMO: random tiny model — {title}"
    ax.set_title(title, fontsize=13, pad=30 if len(handles) <= 3 else 46, color="#9c0006" if demo else "black")
    fig.savefig(path)


# ----------------------------------------------------------------------------------------------- html
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1800px}
h1{margin-top:0}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
.banner{background:#fff2cc;border:2px solid #c00;color:#9c0006;font-weight:bold;padding:10px 14px;margin:12px 0}
.note{color:#555;font-size:13px;margin:4px 0}
.scroll{overflow-x:auto;margin:8px 0 16px}
table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #d0d0d0;padding:3px 7px;vertical-align:top;white-space:nowrap}
th{background:#eee}
td:first-child{position:sticky;left:0;background:#fff;z-index:1}
th:first-child{position:sticky;left:0;z-index:2}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.pos{background:#c6efce}td.neg{background:#ffc7ce}td.flag{font-weight:bold;outline:2px solid #333;outline-offset:-2px}
tr.demo td:first-child{color:#9c0006}
td.long{white-space:normal;min-width:220px;max-width:420px;word-break:break-word}
img{max-width:100%;border:1px solid #ddd;margin:8px 0}
"""


def _html_block(b: Block, level: int = 2, max_rows: int | None = None, heading: bool = True) -> str:
    e = html.escape
    out = [f"<h{level}>{e(b.title)}</h{level}>"] if heading else []
    out += [f'<p class="note">{e(n)}</p>' for n in b.notes] if heading else []
    if not b.rows:
        return "\n".join(out + ["<p><em>(none)</em></p>"])
    out.append('<div class="scroll"><table><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in b.headers)
               + "</tr></thead><tbody>")
    rows = b.rows if max_rows is None else b.rows[:max_rows]
    for row in rows:
        demo = any(DEMO_TAG in c.text for c in row[:2])
        tds = []
        for c in row:
            cls = [k for k, on in (("num", c.numeric), (c.tone, bool(c.tone)), ("flag", c.bold),
                                   ("long", len(c.text) > 60)) if on]
            attr = f' class="{" ".join(cls)}"' if cls else ""
            tds.append(f"<td{attr}>{e(c.text)}</td>")
        out.append(f'<tr{" class=demo" if demo else ""}>' + "".join(tds) + "</tr>")
    out.append("</tbody></table></div>")
    if max_rows is not None and len(b.rows) > max_rows:
        out.append(f'<p class="note">… {len(b.rows) - max_rows} more rows in report.xlsx.</p>')
    return "\n".join(out)


def _html(data: ReportData, blocks: dict[str, list[Block]], paths: ReportPaths, work_dir: Path) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>Mini-Monkey reproduction report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>Mini-Monkey reproduction report</h1>"]
    if data.has_demo:
        parts.append(f'<div class="banner">{e(DEMO_BANNER)}</div>')
    parts.append(f'<p class="note">{len(data.runs)} measured run(s) from <code>{e(str(work_dir))}</code>.</p>')
    parts += [_html_block(blocks["table"][0]), _html_block(blocks["deltas"][0]), _html_block(blocks["gaps"][0])]
    parts.append("<h2>Charts</h2>")
    for p, alt in ((paths.scores_chart, "Scores, measured vs published"),
                   (paths.delta_chart, f"{PAIR_NEW_NAME} − {PAIR_BASE_NAME} per benchmark")):
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(f'<img alt="{e(alt)}" src="data:image/png;base64,{b64}">')
    parts.append("<h2>Breakdowns</h2>")
    parts += [_html_block(b, level=3) for b in blocks["breakdowns"]] or ["<p><em>(no sub-scores)</em></p>"]
    counts, diff = blocks["per-sample diff"]
    if diff.rows:
        parts.append(f"<h2>{e(diff.title)}</h2>" + "".join(f'<p class="note">{e(n)}</p>' for n in diff.notes))
        parts += [_html_block(counts, heading=False), _html_block(diff, max_rows=500, heading=False)]
    else:
        parts.append(_html_block(diff))
    parts.append(_html_block(blocks["runs"][0]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------------------- entry point
def build_report(work_dir: str | Path, out_dir: str | Path | None = None,
                 tolerance: Mapping[str, float] | float | None = None, published: str | None = None) -> ReportPaths:
    """Write report.md, report.xlsx, report.html and two PNG charts for every run under ``work_dir``.

    ``out_dir`` defaults to ``{work_dir}/report``; ``tolerance`` overrides DEFAULT_TOLERANCE per column
    (see ``resolve_tolerance``); ``published``: card | all | NAME,... (see ``report_landscape``).
    """
    work_dir = Path(work_dir)
    out = Path(out_dir) if out_dir is not None else work_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    data = collect_report(work_dir, tolerance, skip=out)
    if not data.runs:
        logger.warning("no run folders (with run.json) under %s; the report shows published numbers only", work_dir)
    paths = ReportPaths(out_dir=out, markdown=out / "report.md", xlsx=out / "report.xlsx", html=out / "report.html",
                        scores_chart=out / "scores.png", delta_chart=out / "delta.png")
    blocks = _blocks(data)
    _chart_scores(paths.scores_chart, data)
    _chart_delta(paths.delta_chart, data)
    paths.markdown.write_text(_markdown(data, blocks, paths, work_dir), encoding="utf-8")
    _write_xlsx(paths.xlsx, data, blocks)
    paths.html.write_text(_html(data, blocks, paths, work_dir), encoding="utf-8")
    from .report_landscape import add_landscape  # every published row, ranks, params-vs-score charts

    paths.landscape_charts = add_landscape(data, paths, published)
    from .report_significance import add_significance  # hook: paired significance, forest plot, flip lists
    add_significance(data, paths)
    logger.info("report written to %s", paths.markdown)
    return paths
