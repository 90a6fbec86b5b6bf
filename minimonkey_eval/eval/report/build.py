"""Report: run folders -> paper table, deltas, reproduction gaps, breakdowns, per-sample diff -> md / xlsx / html / png.

Two steps, each one call: ``collect_report(work_dir, tolerance) -> ReportData`` (``report_collect``: reads files,
builds DataFrames) and ``build_report(work_dir, out_dir, tolerance) -> ReportPaths`` (collects, then writes every
output: ``report_render`` for md/xlsx/html, ``report_charts`` for the PNGs, then the sections of
``report_landscape``, ``report_significance`` and ``report_mismatch``).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from minimonkey_eval.eval.report.charts import _chart_delta, _chart_scores
from minimonkey_eval.eval.report.collect import (
    DEFAULT_TOLERANCE,
    DEMO_BANNER,
    DEMO_TAG,
    SHEET_NAMES,
    ReportData,
    ReportPaths,
    Run,
    collect_report,
    load_run,
    load_runs,
    resolve_tolerance,
    select_pair,
)
from minimonkey_eval.eval.report.render import _blocks, _html, _markdown, _write_xlsx

logger = logging.getLogger(__name__)

# The report's public names, wherever they live.
__all__ = ["DEFAULT_TOLERANCE", "DEMO_BANNER", "DEMO_TAG", "SHEET_NAMES", "ReportData", "ReportPaths", "Run",
           "build_report", "collect_report", "load_run", "load_runs", "resolve_tolerance", "select_pair"]


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
    from minimonkey_eval.eval.report.landscape import (
        add_landscape,  # every published row, ranks, params-vs-score charts
    )

    paths.landscape_charts = add_landscape(data, paths, published)
    from minimonkey_eval.eval.report.mismatch_section import add_mismatch
    from minimonkey_eval.eval.report.significance_section import add_significance

    sd = add_significance(data, paths)        # paired significance, forest plot, flip lists, per-run CIs
    add_mismatch(data, paths, sd, work_dir)   # why a run does not match its card: gap vs CI, known causes
    logger.info("report written to %s", paths.markdown)
    return paths

