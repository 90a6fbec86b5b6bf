"""Report section "Why doesn't it match?": per run of a model with a card row and per benchmark with a published number,
the gap, whether the published number lies inside the run's 95% CI (from ``significance_section``), the known
reasons (``mismatch.mismatch_reasons``: split, tiles and their source, dtype, attention, versions, extraction, failed
and OOM samples, limit, demo) and, when a sweep folder exists under the work dir, the sweep point nearest the
published score (read through ``sweep/state.py``, never the sweep runner). On the page before "Breakdowns" and as the
xlsx sheet ``why it differs``.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

from minimonkey_eval.eval.report.collect import ReportContext
from minimonkey_eval.eval.report.mismatch import Mismatch, mismatch_reasons
from minimonkey_eval.eval.report.render import Section, Sheet, Table, text_cell
from minimonkey_eval.eval.report.significance_section import statistics

logger = logging.getLogger(__name__)

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


def sweep_states(work_dir: Path) -> dict[str, dict]:
    """folder name -> state of every sweep folder (``*/sweep.json``) under the work dir, each read once; one of another
    shape (or a folder that is a symlink) is one warning naming it, and left out."""
    from minimonkey_eval.eval.sweep.state import STATE, SweepError, read_state

    out = {}
    for sweep_dir in sorted(p.parent for p in work_dir.glob(f"*/{STATE}")):
        if sweep_dir.is_symlink():
            logger.warning("skipping sweep folder %s: a symlink; folders are read once, never through a link",
                           sweep_dir)
            continue
        try:
            out[sweep_dir.name] = read_state(sweep_dir)
        except (SweepError, OSError) as exc:   # a broken sweep folder must not break the report
            logger.warning("skipping sweep folder %s: %s", sweep_dir, exc)
    return out


def _nearest(sweeps: dict[str, dict], model: str, m: Mismatch) -> str:
    """The sweep point of this model whose score is nearest the published one (``sweep.nearest_point``), over every
    sweep folder under the work dir (``sweep_states``)."""
    from minimonkey_eval.eval.sweep.state import label, nearest_point

    best, where = None, None
    for name, state in sweeps.items():
        point = nearest_point(name, m.dataset, m.published, model=model, state=state)
        if point and (best is None or abs(point["headline"] - m.published) < abs(best["headline"] - m.published)):
            best, where = point, name
    return f"{label(best)}: {best['headline']:.4g} ({where})" if best else ""


def collect_rows(data, sd, work_dir: Path) -> list[list[str]]:
    rows = []
    sweeps = sweep_states(Path(work_dir)) if data.runs else {}
    for run in data.runs:
        for m in mismatch_reasons(run.path):
            reasons = "; ".join(f"{r.kind}: {r.text}" for r in m.reasons)
            rows.append([run.display, m.column, _fmt(m.ours), _fmt(m.published), _fmt(m.gap),
                         _ci_status(sd, run.run_name, m.dataset), _nearest(sweeps, run.model, m), reasons])
    return rows


def table(rows: list[list[str]]) -> Table:
    return Table(TITLE, list(HEADERS), [[text_cell(v) for v in r] for r in rows], [NOTE],
                 empty="no run of a model with a published card row")


def section(ctx: ReportContext) -> Section:
    """The table on the page and in the sheet ``why it differs``; CI verdicts from the significance section's
    statistics (shared through ``ctx.once``)."""
    t = table(collect_rows(ctx.data, ctx.once(statistics), Path(ctx.work_dir)))
    return Section([t], [Sheet(SHEET, [t])])
