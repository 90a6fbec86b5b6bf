"""The one seam between the runner and whatever answers the questions: the :class:`Backend` protocol.

The runner (``runner.Runner``) owns the run folder, resume, sharding, the prediction store and every written file;
a backend owns the model. It turns a dataset row into a pipeline ``Job`` (:meth:`Backend.describe`), answers batches
of Jobs (:meth:`Backend.pipeline`: an object with ``run(sources, describe)`` yielding answered batches, like
``models.pipeline.Pipeline``), and says what the run record must hold about it (identity, tile settings, label,
names, extra fields). Two backends exist (``eval/backends``): our engine with the VLMEvalKit wrappers over it, and any
VLMEvalKit model through its own wrapper; a serving engine would be a third. The protocol lives here, with the runner
that calls it, so that ``eval/run`` never imports ``eval/backends``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Protocol

if TYPE_CHECKING:   # annotations only: importing this module loads no torch
    from minimonkey_eval.models.planning import Job


class Answerer(Protocol):
    """What :meth:`Backend.pipeline` returns (``models.pipeline.Pipeline`` is one)."""

    def run(self, sources: Iterable, describe) -> Iterator[list[Job]]:
        """``describe(source) -> Job`` for every source, then the Jobs in answered batches (``answer`` or
        ``error`` + ``failed_at`` set), each source exactly once."""


class Backend(Protocol):
    """A model behind the runner. Attributes are read once the backend is built; nothing is loaded until
    :meth:`pipeline` (a loading failure is the run's, not a sample's)."""

    model_path: Path                # the folder whose files make the run's checkpoint identity
    label: str                      # the run's label in reports
    default_run_name: str           # the run folder's name when --run-name is not given
    prediction_prefix: str | None   # VLMEvalKit's prediction file is {prefix}_{DATASET}.xlsx; None: the model name
    batch_size: int | str           # samples per batch (or 'auto'), as recorded

    def identity(self) -> dict:
        """The run record's identity fields (``record.IDENTITY_FIELDS``) except ``checkpoint_sha256``, which the
        runner computes from ``model_path``: a resumed run must agree on every one."""

    def tiles_record(self, dataset: str) -> dict:
        """The run record's ``tiles[dataset]``: the tile setting used on ``dataset`` (part of the identity)."""

    def record_fields(self) -> dict:
        """Further run record fields (``record.RunRecord`` names): asked when the folder opens and again after each
        dataset's inference, so what is known only once the model is loaded (dtype, device, parameters) lands too."""

    def result_fields(self, records: list[dict]) -> dict:
        """Extra fields of the run record's ``results[dataset]`` from the dataset's prediction records."""

    def pipeline(self, dataset, profile=None) -> Answerer:
        """Ready to answer ``dataset`` (the model loaded, pointed at the dataset's image files); ``profile``
        (``models.profile.Profile``) times it for ``bench``."""

    def describe(self, dataset, line) -> Job:
        """Row ``line`` of ``dataset`` as a Job (called on the pipeline's staging threads). It carries
        VLMEvalKit's message in ``job.extra['message']`` (the record's image paths come from it); a row that cannot
        be asked is a failed Job (``job.fail(stage, exc)``), never an exception."""

    def release(self) -> None:
        """Drop what the backend loaded itself (called once the run is over)."""
