"""Evaluation: from a model and benchmark TSVs to scored run folders, statistics, sweeps and the report.

Along the flow: ``runfiles/`` (a run folder's file names, the typed run record, atomic writes: what every step below
reads or writes) -> ``run/`` (the runner: run folder, prediction store, inference loop, writers, torchrun) ->
``backends/`` (what answers: our engine, or any VLMEvalKit wrapper; ``launch.py`` joins a backend to the runner) ->
``scoring.py`` (vlmeval's own metrics) -> ``stats/`` (resampling units, significance, compare) -> ``report/`` (collect
-> sections -> one render pass) and ``sweep/`` (grids of tiles x SCM) -> ``trackers/`` (run folders, the report and
sweeps logged to W&B / MLflow). ``bench.py`` times the runner's own path. Layering (checked by import-linter, see
pyproject.toml): ``stats``, ``report`` and ``sweep/state.py`` never import ``run`` or ``backends``; ``trackers`` reads
the run record but never imports the runner or the backends; ``run`` never imports ``backends``; nothing here imports
``cli``.
"""
