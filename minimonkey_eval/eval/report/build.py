"""The report's entry point: run folders -> report.md, report.xlsx, report.html and PNG charts, in three steps.

``build_report(work_dir)`` collects every run folder into tables (``collect.collect_report``), builds every section
of ``SECTIONS`` in order (each a function ``ReportContext -> Section``: page blocks + workbook sheets, writing its own
PNGs), then renders md / xlsx / html in one pass (``render.write_report``). ``SECTIONS`` is the report's table of
contents: to add a section, write its function and add it to the list (see the package docstring).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from minimonkey_eval.eval.report import charts, landscape, mismatch_section, significance_section, tables
from minimonkey_eval.eval.report.collect import (
    DEMO_BANNER,
    DEMO_TAG,
    SHEET_NAMES,
    ReportContext,
    ReportData,
    ReportPaths,
    Run,
    collect_report,
    load_run,
    load_runs,
    resolve_tolerance,
    select_pair,
)
from minimonkey_eval.eval.report.render import Section, write_report

logger = logging.getLogger(__name__)

# The report's public names, wherever they live.
__all__ = ["DEMO_BANNER", "DEMO_TAG", "SECTIONS", "SHEET_NAMES", "ReportContext", "ReportData", "ReportPaths", "Run",
           "build_report", "collect_report", "load_run", "load_runs", "resolve_tolerance", "select_pair"]

# The sections, in page order (report.md / report.html); the workbook puts the core sheets (SHEET_NAMES) first.
SECTIONS: tuple[Callable[[ReportContext], Section], ...] = (
    tables.header,                  # title, demo banner, where the runs come from
    tables.paper_table,             # published rows + every measured run, paper units
    tables.deltas,                  # the compared pair, MSAC / SCM on − off
    tables.gaps,                    # measured − published, flagged above the tolerance
    charts.section,                 # scores.png, delta.png
    landscape.section,              # "Where the runs sit": every published row, ranks, params-vs-score charts
    significance_section.section,   # "Is the difference real?": paired tests, forest plot, flip lists, per-run CIs
    mismatch_section.section,       # "Why doesn't it match?": gap vs CI, known causes, nearest sweep point
    tables.breakdowns,              # sub-scores per benchmark
    tables.per_sample_diff,         # samples the pair disagrees on
    tables.runs,                    # what each run was (settings, checkpoint, commit)
)


def build_report(work_dir: str | Path, out_dir: str | Path | None = None,
                 tolerance: Mapping[str, float] | float | None = None, published: str | list[str] | None = None
                 ) -> ReportPaths:
    """Write report.md, report.xlsx, report.html and the PNG charts for every run under ``work_dir``.

    ``out_dir`` defaults to ``{work_dir}/report``; ``tolerance`` overrides the registry's gap tolerances (see
    ``resolve_tolerance``); ``published``: card | all | NAME,... (see ``landscape.parse_published``).
    """
    work_dir = Path(work_dir)
    out = Path(out_dir) if out_dir is not None else work_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    data = collect_report(work_dir, tolerance, skip=out)
    if not data.runs:
        logger.warning("no run folders (with run.json) under %s; the report shows published numbers only", work_dir)
    paths = ReportPaths(out_dir=out, markdown=out / "report.md", xlsx=out / "report.xlsx", html=out / "report.html",
                        scores_chart=out / "scores.png", delta_chart=out / "delta.png")
    ctx = ReportContext(data, paths, work_dir, published)
    sections = [make(ctx) for make in SECTIONS]
    write_report(paths, sections, tables.report_title())
    paths.runs, paths.run_cis = data.runs, ctx.once(significance_section.statistics).run_cis
    logger.info("report written to %s", paths.markdown)
    return paths
