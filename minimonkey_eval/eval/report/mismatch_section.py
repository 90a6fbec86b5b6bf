"""Report section "Why doesn't it match?": per run of a model with a card row and per benchmark with a published number,
the gap, whether the published number lies inside the run's 95% CI (from ``significance_section``), the known
reasons (``mismatch.mismatch_reasons``: split, tiles and their source, dtype, attention, versions, extraction, failed
and OOM samples, limit, demo) and, when a sweep folder exists under the work dir, the sweep point nearest the
published score (read through ``sweep/state.py``, never the sweep runner). On the page before "Breakdowns" and as the
xlsx sheet ``why it differs``.
"""
from __future__ import annotations

import math
from pathlib import Path

from minimonkey_eval.eval.report.collect import ReportContext
from minimonkey_eval.eval.report.mismatch import Mismatch, mismatch_reasons
from minimonkey_eval.eval.report.render import Section, Sheet, Table, text_cell
from minimonkey_eval.eval.report.significance_section import statistics

SHEET = "why it differs"
TITLE = "Why doesn't it match? Reproduction gaps and their known causes"
HEADERS = ("Run", "Benchmark", "Measured", "Published", "Gap", "Published vs 95% CI", "Nearest sweep point",
           "Known causes")
NOTE = ("A gap inside the run's 95% CI is sampling noise; outside it, the causes listed (or an unknown one) are "
        "real. 'config' rows are ablations (another setting than the card's), not reproduction gaps.")


def _fmt(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _ci_status(sd, run_name: str, dataset: str) -> str:
    for row in getattr(sd, "run_cis", []) if sd is not None else []:
        if row.run == run_name and row.dataset == dataset:
            if row.ci is None:
                return row.status
            return f"{row.status} [{row.ci.lo:.4g}, {row.ci.hi:.4g}]"
    return ""


def _nearest(work_dir: Path, model: str, m: Mismatch) -> str:
    """The sweep point of this model whose score is nearest the published one (``sweep.nearest_point``), over every
    sweep folder (``*/sweep.json``) under the work dir."""
    from minimonkey_eval.eval.sweep.state import STATE, label, nearest_point

    best, where = None, None
    for sweep_dir in sorted(p.parent for p in work_dir.glob(f"*/{STATE}")):
        try:
            point = nearest_point(sweep_dir, m.dataset, m.published, model=model)
        except (OSError, ValueError, KeyError, TypeError):   # a broken sweep folder must not break the report
            continue
        if point and (best is None or abs(point["headline"] - m.published) < abs(best["headline"] - m.published)):
            best, where = point, sweep_dir.name
    return f"{label(best)}: {best['headline']:.4g} ({where})" if best else ""


def collect_rows(data, sd, work_dir: Path) -> list[list[str]]:
    rows = []
    for run in data.runs:
        for m in mismatch_reasons(run.path):
            reasons = "; ".join(f"{r.kind}: {r.text}" for r in m.reasons)
            rows.append([run.display, m.column, _fmt(m.ours), _fmt(m.published), _fmt(m.gap),
                         _ci_status(sd, run.run_name, m.dataset), _nearest(work_dir, run.model, m), reasons])
    return rows


def table(rows: list[list[str]]) -> Table:
    return Table(TITLE, list(HEADERS), [[text_cell(v) for v in r] for r in rows], [NOTE],
                 empty="no run of a model with a published card row")


def section(ctx: ReportContext) -> Section:
    """The table on the page and in the sheet ``why it differs``; CI verdicts from the significance section's
    statistics (shared through ``ctx.once``)."""
    t = table(collect_rows(ctx.data, ctx.once(statistics), Path(ctx.work_dir)))
    return Section([t], [Sheet(SHEET, [t])])
