"""Statistics over run folders: resampling units, CIs and paired tests, and run-vs-run comparison.

``units.py`` groups a benchmark's per-sample scores into resampling units that recompute its headline exactly (the
benchmark's ``Resampling`` rule comes from the registry: ``datasets.registry.resampling``); ``significance.py``
holds the statistics on units (exact McNemar, exact paired randomization, Wilson / Newcombe intervals, seeded
bootstrap CIs where they hold, Holm, MDE, verdicts); ``compare.py``
pairs two runs benchmark by benchmark (``minimonkey-eval compare`` and the report's significance section).
Imports: ``datasets`` (registry, MME categories, the row key ``indexes.index_key``) and ``eval/report`` for the run
folder reader (``collect.load_run``) and the published numbers; never ``eval/run`` and never the fixtures.
"""
