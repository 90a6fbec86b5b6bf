"""The comparison report: every run folder under a work dir -> report.md, report.xlsx, report.html and PNG charts.

What lives here, in the order the report is made (``build.build_report``):

* ``collect.py`` reads the run folders (``load_run``, over the one run record reader ``runfiles.record``; also used
  by ``eval/stats``) into the report's tables (``ReportData``) and holds ``ReportContext``, what every section is
  built from;
* ``published.py`` holds the two model cards (package data) and the published rows of every registered model;
* the sections, each a function ``(ReportContext) -> Section``: ``tables.py`` (title, paper table, deltas, gaps,
  breakdowns, per-sample diff, runs), ``charts.py`` (scores and delta PNGs), ``landscape.py`` ("Where the runs
  sit"), ``significance_section.py`` ("Is the difference real?") and ``mismatch_section.py`` ("Why doesn't it
  match?", over the pure ``mismatch.py``);
* ``render.py``: the blocks a section is made of (``Heading``, ``Note``, ``Table`` with ``Cell`` rows, ``Image``,
  ...), ``Sheet`` and ``Section``, the cell makers, and ``write_report``, which renders every section into md, html
  and xlsx in one pass (no file is reopened or patched after it is written);
* ``build.py``: ``SECTIONS``, the list of sections in page order, and ``build_report``.

How to add a report section: write ``def section(ctx: ReportContext) -> Section`` in a new module here, returning
its page blocks (``render``'s public block types and cell makers; a block for one format only goes in ``Only``)
and its workbook sheets (``Sheet`` with ``Table``s; the core sheets ``SHEET_NAMES`` come first, then the others in
section order); write any PNG it shows into ``ctx.paths.out_dir`` and show it with ``Image``; share a costly result
with another section through ``ctx.once(fn)``. Then add the function to ``build.SECTIONS`` where it belongs on
the page. Nothing else changes: md, html and xlsx follow.

What it may import: ``datasets`` (the benchmark registry: decimals, chart scale, tolerances, titles), ``models``
(the model registry, read when a report is built, never frozen at import), ``eval/stats`` (the significance
section), ``eval/sweep/state.py`` (the mismatch section reads ``sweep.json``), pandas, matplotlib and openpyxl.
It never imports ``eval/run``, ``eval/backends`` or ``eval/sweep/grid.py`` (the runners), and no private name
(``_x``) of another module.
"""
