"""A run folder's files: their names, the run record, and how they are written.

* ``layout.RunLayout``: every file name of a run folder (``run.json``, summary and score sheets, samples sheets,
  prediction parts, lock), in one place;
* ``record.RunRecord``: the typed run record with the one reader (``read_run_record``) and the one writer
  (``write_run_record``) of its file, versioned, its shape checks in one place;
* ``files``: atomic writes and symlink-refusing opens every writer of a run folder uses.

Shared by the runner (``eval/run``, which writes the folder), the statistics, the report and the sweep (which read
it). May import only the standard library and ``errors``; nothing of ``eval`` imports from here upward.
"""
