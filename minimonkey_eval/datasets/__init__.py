"""Benchmarks and their data: the benchmark registry (``registry.py``: one typed ``Benchmark`` record per table
column), local VLMEvalKit TSVs (``local.py``: offline loading through vlmeval's dataset classes), the checks every
TSV cell passes before vlmeval reads it (``validate.py``), the row key (``indexes.py``), MME's categories
(``mme.py``), and the synthetic fixtures and bench workloads this project tests on (``fixtures.py``,
``fixture_drawing.py``, ``workloads.py``). Imports ``models`` (registry, tile profiles, settings), ``errors``,
``process_state`` and vlmeval; never ``eval`` or ``cli``.
"""
