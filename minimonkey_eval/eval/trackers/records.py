"""What a tracker receives, tracker-neutral: one run folder (``tracked_run``) or one sweep folder (``tracked_sweep``).

A run folder: its identity (every scalar of ``run.json``, read by the run record reader, as parameters: nested keys
joined with '.', lists with ','; the per-dataset results, the checkpoint's file hashes, the command line and the
timings left out), the headline of every benchmark in paper units as metric ``<column>/headline`` with its 95% CI as
``<column>/ci_low`` / ``<column>/ci_high`` (``report.significance_section.run_cis``, the report's own computation)
and a ``headlines`` table, the score sheets and the report's files. A sweep folder: its points (``sweep.json``) as a
table, its pages and charts.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from minimonkey_eval.datasets.registry import BENCHMARKS
from minimonkey_eval.eval.report.collect import Run, load_run
from minimonkey_eval.eval.report.significance_section import run_cis
from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.eval.runfiles.record import RunRecord
from minimonkey_eval.eval.sweep.state import STATE, read_state
from minimonkey_eval.eval.trackers.options import TrackerError

KEY_TAG = "minimonkey_eval.key"
# run.json keys that are not parameters: the results become metrics, the rest is long and not identity
NOT_PARAMS = ("results", "checkpoint_files", "argv", "timings")
REPORT_FILES = ("report.md", "report.xlsx", "report.html")
SWEEP_FILES = ("sweep.csv", "sweep.xlsx", "sweep.md", "sweep.html", STATE)
HEADLINE_COLUMNS = ("column", "dataset", "headline", "ci_low", "ci_high", "n", "unit", "method", "published",
                    "status")


def run_id_for(name: str, key: str) -> str:
    """A tracker run id: the name (letters, digits, - and _) and a hash of the key (stable across re-logging)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:48] or "run"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@dataclass
class Headline:
    column: str            # the paper's column: the metric prefix
    dataset: str           # VLMEvalKit's name
    headline: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int | None = None
    unit: str = ""
    method: str = ""
    published: float = math.nan
    status: str = ""

    def metrics(self) -> dict[str, float]:
        out = {f"{self.column}/headline": self.headline}
        if not (math.isnan(self.ci_low) or math.isnan(self.ci_high)):
            out[f"{self.column}/ci_low"] = self.ci_low
            out[f"{self.column}/ci_high"] = self.ci_high
        return {k: v for k, v in out.items() if not math.isnan(v)}


@dataclass
class TrackedRun:
    """One run folder as a tracker sees it."""
    name: str
    key: str                       # folder + finish time: the same run when logged again
    params: dict[str, str]
    tags: dict[str, str]
    headlines: list[Headline]
    sheets: list[Path]
    report: list[Path] = field(default_factory=list)
    finished: float = 0.0          # epoch seconds: the metrics' timestamp

    @property
    def run_id(self) -> str:
        return run_id_for(self.name, self.key)

    @property
    def key_hash(self) -> str:
        return self.tags[KEY_TAG]

    @property
    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for h in self.headlines:
            out.update(h.metrics())
        return out

    def headline_table(self) -> pd.DataFrame:
        return pd.DataFrame([[getattr(h, c) for c in HEADLINE_COLUMNS] for h in self.headlines],
                            columns=list(HEADLINE_COLUMNS))


def flat_params(meta: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Scalars as text, nested keys joined with '.', lists of scalars joined with ',' (top-level ``NOT_PARAMS``
    left out)."""
    out: dict[str, str] = {}
    for key, value in meta.items():
        if not prefix and key in NOT_PARAMS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            if all(not isinstance(v, (dict, list, tuple)) for v in value):
                out[name] = ",".join(map(str, value))
        else:
            out[name] = "" if value is None else str(value)
    return out


def headlines(run: Run, report_cis: Sequence | None = None) -> list[Headline]:
    """Every benchmark the run has a headline or a per-sample file for, in the paper's order, with its CI (the
    report's rows when given, else computed as the report does)."""
    rows = run_cis([run]) if report_cis is None else [c for c in report_cis if c.run == run.run_name]
    cis = {row.dataset: row for row in rows}
    out = []
    for bench in BENCHMARKS:
        value, row = float(run.scores.get(bench.column, math.nan)), cis.get(bench.vlmeval_name)
        if math.isnan(value) and row is None:
            continue
        h = Headline(bench.column, bench.vlmeval_name, value)
        if row is not None:
            h.unit, h.status = row.unit, row.status
            if row.ci is not None:
                h.ci_low, h.ci_high, h.n, h.method, h.published = (row.ci.lo, row.ci.hi, row.ci.n, row.ci.method,
                                                                   row.ci.published)
        out.append(h)
    return out


def tracked_run(run: Run | str | Path, report: Sequence[Path] = (), report_cis: Sequence | None = None
                ) -> TrackedRun:
    """What is logged for a run (a folder, or one the report already read: not read again; ``report``: the
    report's files to attach; ``report_cis``: the report's per-run CI rows, not computed again)."""
    run = run if isinstance(run, Run) else load_run(Path(run))   # load_run reads the record through its one reader
    run_dir = run.path
    record = RunRecord.from_dict(run.meta, RunLayout(run_dir).run_json)
    heads = headlines(run, report_cis)
    layout = RunLayout(run_dir)
    sheets = [layout.run_json, layout.summary_csv]
    for h in heads:
        sheets += [layout.score_csv(h.dataset), layout.samples_csv(h.dataset)]
    key = f"{run_dir.resolve()}|{run.finished}"
    tags = {"model": str(record.model or ""), "label": run.label, "run_folder": str(run_dir.resolve()),
            KEY_TAG: hashlib.sha256(key.encode()).hexdigest()[:16]}
    tags.update({f"identity.{k}": str(v) for k, v in record.identity().items()})
    if record.git_commit:
        tags["git_commit"] = record.git_commit
    return TrackedRun(str(record.run_name or run_dir.name), key, flat_params(record.to_dict()), tags, heads,
                      [p for p in sheets if p.is_file()], [Path(p) for p in report if Path(p).is_file()],
                      run.finished)


def report_files(report_dir: str | Path | None) -> list[Path]:
    """The report's pages, workbook and charts (empty without a report folder)."""
    if report_dir is None or not Path(report_dir).is_dir():
        return []
    d = Path(report_dir)
    return [d / n for n in REPORT_FILES if (d / n).is_file()] + sorted(d.glob("*.png"))


@dataclass
class TrackedSweep:
    """A sweep folder as a tracker sees it: one snapshot per content of sweep.json (a grown sweep is a new run)."""
    name: str
    folder: str
    key: str                       # folder + hash of sweep.json
    points: pd.DataFrame           # one row per grid point x dataset
    files: list[Path]

    @property
    def run_id(self) -> str:
        return run_id_for(self.name, self.key)

    @property
    def key_hash(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:16]


def tracked_sweep(sweep_dir: str | Path) -> TrackedSweep:
    """What is logged for a sweep folder: its points and its pages and charts."""
    d = Path(sweep_dir).resolve()
    if not (d / STATE).is_file():
        raise TrackerError(f"{d / STATE}: no sweep to log; run `minimonkey-eval sweep --out {d}` first")
    rows = list(read_state(d)["rows"].values())
    points = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in rows])
    files = [d / n for n in SWEEP_FILES if (d / n).is_file()] + sorted(d.glob("*.png"))
    digest = hashlib.sha256((d / STATE).read_bytes()).hexdigest()[:16]
    return TrackedSweep(f"sweep-{d.name}", str(d), f"{d}|{digest}", points, files)
