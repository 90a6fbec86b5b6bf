"""Results where teams keep them: run folders, the report and sweeps logged to Weights & Biases and/or MLflow.

* ``options.py``: the tracker names, ``TrackerOptions`` (``--log-to``, project, W&B mode, MLflow URI) and
  ``TrackerError``; imports nothing heavy (the CLI's argument parser reads it);
* ``records.py``: what is logged, tracker-neutral: ``tracked_run(run_dir)`` (identity from ``run.json`` through the
  run record reader ``eval.runfiles.record``, headlines in paper units with their 95% CIs exactly as the report's
  significance section computes them, the score sheets, the report's files) and ``tracked_sweep(folder)`` (the
  sweep's points from ``sweep.json`` through ``eval.sweep.state``, its pages and charts);
* ``wandb_sink.py`` / ``mlflow_sink.py``: one tracker each (the library imported inside, only when named: both are
  optional extras, ``pip install ".[trackers]"``, and take seconds to import);
* ``log.py``: ``log_runs`` and ``log_sweep``, what ``run-all``, ``report`` and ``sweep`` call with ``--log-to``.

Logging twice is idempotent: a run is keyed by its folder and finish time (MLflow: the tag ``minimonkey_eval.key``
finds the same run; W&B: a run id made from it, resumed), a sweep by its folder and the content of ``sweep.json``.

May import ``datasets``, ``eval.runfiles.record`` (the run record reader, nothing else of the runner), ``eval.report``
(the run reader and the CI computation), ``eval.sweep.state``, pandas; never ``eval.backends``, the runner's loop or
``cli``.
"""
