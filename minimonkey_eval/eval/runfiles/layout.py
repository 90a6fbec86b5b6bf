"""The run folder's file names, in one place: :class:`RunLayout` maps a run folder to the path of each file.

Run folder ``{work_dir}/{run_name}/`` (what the report, ``compare`` and ``sweep`` read)::

    run.json                      the run record (``record.RunRecord``: identity, versions, argv, timings, results)
    summary.csv / summary.xlsx    one row: run_name, model, label, demo, then the registry's PAPER_COLUMNS
    {DATASET}_score.csv / .xlsx   long sub-scores (dataset, metric, value, extraction); metric 'headline'
    {DATASET}_samples.csv         index, question, answer, prediction, score, image_path, failed, reason
    {prefix}_{DATASET}.xlsx       VLMEvalKit's prediction file (dataset rows + 'prediction'; prefix: the model name, or
                                  the run name for a ``vlmeval:NAME`` run) and next to it the files vlmeval's
                                  evaluate() writes (_acc.csv, _score.csv, ...)
    predictions/{DATASET}.part{R}.jsonl   append-only per-rank predictions (resume state, ``store``)
    predictions/{DATASET}.jsonl           merged, in dataset order
    .lock                         fcntl lock held while a run writes the folder

This is the only module that spells these names; the run record's file is read and written by ``record`` only.
Pure stdlib.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUN_JSON = "run.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_XLSX = "summary.xlsx"
PREDICTIONS_DIR = "predictions"
LOCK_NAME = ".lock"
SCORE_STEM = "_score"            # {DATASET}_score.csv / .xlsx
SAMPLES_SUFFIX = "_samples.csv"  # {DATASET}_samples.csv
PART_INFIX = ".part"             # predictions/{DATASET}.part{R}.jsonl


@dataclass(frozen=True)
class RunLayout:
    """Paths of the files of the run folder ``run_dir`` (nothing is created or read here, except by the globs)."""

    run_dir: Path

    def __post_init__(self):
        object.__setattr__(self, "run_dir", Path(self.run_dir))

    # ---- one per run ------------------------------------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.run_dir / RUN_JSON

    @property
    def summary_csv(self) -> Path:
        return self.run_dir / SUMMARY_CSV

    @property
    def summary_xlsx(self) -> Path:
        return self.run_dir / SUMMARY_XLSX

    @property
    def predictions_dir(self) -> Path:
        return self.run_dir / PREDICTIONS_DIR

    @property
    def lock(self) -> Path:
        return self.run_dir / LOCK_NAME

    def is_run_folder(self) -> bool:
        """Whether ``run_dir`` holds a run record (what makes a folder under ``--work-dir`` a run)."""
        return self.run_json.is_file()

    # ---- one per dataset --------------------------------------------------------------------------------------
    def score_csv(self, dataset: str) -> Path:
        return self.run_dir / f"{dataset}{SCORE_STEM}.csv"

    def score_xlsx(self, dataset: str) -> Path:
        return self.run_dir / f"{dataset}{SCORE_STEM}.xlsx"

    def samples_csv(self, dataset: str) -> Path:
        return self.run_dir / f"{dataset}{SAMPLES_SUFFIX}"

    def sampled_datasets(self) -> list[str]:
        """The datasets that have a ``{DATASET}_samples.csv`` here, sorted."""
        return sorted(p.name[:-len(SAMPLES_SUFFIX)] for p in self.run_dir.glob(f"*{SAMPLES_SUFFIX}"))

    def prediction_xlsx(self, prefix: str, dataset: str) -> Path:
        """VLMEvalKit's prediction file ``{prefix}_{DATASET}.xlsx`` (the name its ``evaluate`` derives others from)."""
        return self.run_dir / f"{prefix}_{dataset}.xlsx"

    def part(self, dataset: str, rank: int) -> Path:
        return self.predictions_dir / f"{dataset}{PART_INFIX}{int(rank)}.jsonl"

    def part_paths(self, dataset: str) -> list[Path]:
        """Every rank's part file of ``dataset``, in rank order."""
        prefix = f"{dataset}{PART_INFIX}"

        def rank(path: Path) -> str:
            return path.name[len(prefix):-len(".jsonl")]

        paths = [p for p in self.predictions_dir.glob(f"{prefix}*.jsonl") if rank(p).isdigit()]
        return sorted(paths, key=lambda p: int(rank(p)))

    def merged(self, dataset: str) -> Path:
        return self.predictions_dir / f"{dataset}.jsonl"

    def has_predictions(self) -> bool:
        """Whether any prediction file (``predictions/*.jsonl``) of the folder holds a byte."""
        return any(p.is_file() and p.stat().st_size > 0 for p in self.predictions_dir.glob("*.jsonl"))
