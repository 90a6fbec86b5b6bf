"""The runner: one run folder filled from a backend's answers, resumable and data-parallel.

* ``runner.Runner``: composes the pieces below and runs the datasets (the entry point is ``eval.launch.run``);
* ``backend.Backend``: the protocol a model must implement to be run (implementations: ``eval/backends``);
* ``options``: ``RunOptions`` and their checks, ``RunResult``; ``record``: the run record (``RunRecord``, its one
  reader and writer); ``layout``: every file name of a run folder (``RunLayout``); ``folder``: lock + record;
* ``store``: the append-only prediction store and lock; ``inference``: the loop rows -> Jobs -> records;
  ``writers``: prediction xlsx, samples and summary sheets; ``guards``: defences against hostile input;
  ``distributed``: torchrun's ranks (``DistContext``, the only source of the rank).

May import ``models``, ``datasets``, ``eval.scoring`` and the top-level helpers (``errors``, ``naming``,
``process_state``); never ``eval.backends`` (a backend is handed in), ``eval.report``, ``eval.stats`` or ``cli``.
"""
