"""Sweeps: cost against accuracy over a grid of tile budgets x SCM ratios (``minimonkey-eval sweep``).

``grid.py`` runs (or resumes) the grid, one ordinary run folder per point, and appends a row per point and dataset
to ``sweep.json``; ``state.py`` reads that file (and names the row nearest a published score) without the runner;
``charts.py`` draws the per-dataset Pareto charts and writes ``sweep.md`` / ``sweep.html``. Imports: ``grid`` uses
``eval/run`` and ``eval/stats``; ``state`` and ``charts`` use neither (and never ``grid``), so the report reads a
sweep through ``state`` alone.
"""
