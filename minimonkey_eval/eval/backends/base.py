"""What every backend shares: a dataset row as VLMEvalKit's message, inside a pipeline Job.

Both backends ask a row the way VLMEvalKit's ``infer_data`` does: the model wrapper's ``build_prompt`` when it has a
custom prompt for the dataset (and the dataset does not force its own), else the dataset's ``build_prompt``; the
images it names are dumped and checked. :func:`message_job` wraps that into the Job a backend's ``describe``
returns (``job.extra['message']``; a failure is the Job's, stage ``'prompt'``). The protocol the backends implement
is ``eval.run.backend.Backend``. Imports nothing heavy at module level.
"""
from __future__ import annotations

from minimonkey_eval.datasets.validate import check_message_images, guard_dump_targets


def message_for(model, dataset, line) -> list[dict]:
    """The message VLMEvalKit's infer_data builds for a row with ``model`` (a wrapper with ``use_custom_prompt`` /
    ``build_prompt``): the dataset's prompt if forced or the model has no custom one."""
    name = dataset.dataset_name
    if getattr(dataset, "force_use_dataset_prompt", False) or not model.use_custom_prompt(name):
        return dataset.build_prompt(line)
    return model.build_prompt(line, dataset=name)


def message_job(model, dataset, line):
    """A row as a ``models.pipeline.Job`` holding VLMEvalKit's message (images dumped and checked); a failure is
    stage 'prompt'. KeyboardInterrupt / SystemExit stop the run (what is done is saved)."""
    from minimonkey_eval.models.planning import Job  # torch: loaded once a run asks its first row

    job = Job(key=line["index"])
    try:
        guard_dump_targets(dataset, line)
        job.extra["message"] = message_for(model, dataset, line)
        check_message_images(job.extra["message"])
    except Exception as exc:  # noqa: BLE001 - recorded per sample (corrupt image, bad row)
        job.fail("prompt", exc)
    return job
