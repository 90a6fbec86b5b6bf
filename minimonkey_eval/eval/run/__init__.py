"""The runner: one run folder filled from a backend's answers, resumable and data-parallel.

* ``runner.Runner``: composes the pieces below and runs the datasets (the entry point is ``eval.launch.run``);
* ``backend.Backend``: the protocol a model must implement to be run (implementations: ``eval/backends``);
* ``options``: ``RunOptions`` and their checks, ``RunResult``; ``folder``: lock + run record (the record, the file
  names and the atomic writes live in ``eval/runfiles``, shared with the readers);
* ``store``: the append-only prediction store and lock; ``inference``: the loop rows -> Jobs -> records;
  ``writers``: prediction xlsx, samples and summary sheets; ``guards``: defences against hostile input;
  ``distributed``: torchrun's ranks (``DistContext``, the only source of the rank).

May import ``models``, ``datasets``, ``eval.runfiles``, ``eval.scoring`` and the top-level helpers (``errors``,
``naming``, ``process_state``); never ``eval.backends`` (a backend is handed in), ``eval.report``, ``eval.stats``
or ``cli``.
"""
