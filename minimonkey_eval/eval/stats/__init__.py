"""Statistics over run folders: resampling units, paired bootstrap CIs and tests, and run-vs-run comparison.

``units.py`` groups a benchmark's per-sample scores into resampling units that recompute its headline exactly (the
benchmark's ``Resampling`` rule comes from the registry: ``datasets.registry.resampling``); ``significance.py``
holds the statistics on units (seeded vectorised bootstrap, exact McNemar, Holm, MDE, verdicts); ``compare.py``
pairs two runs benchmark by benchmark (``minimonkey-eval compare`` and the report's significance section).
Imports: ``datasets`` (registry, MME categories), ``eval/run/store.index_key`` (how run folders key samples) and
``eval/report`` for the one run.json reader (``collect.load_run``) and the published numbers; never the fixtures.
"""
