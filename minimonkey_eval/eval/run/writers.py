"""The run's written outputs, from the prediction records: VLMEvalKit's prediction xlsx, the per-sample sheet,
the merged predictions file and ``summary.csv/.xlsx``. :class:`Writers` writes them into one run folder (rank 0,
after inference; names from ``layout.RunLayout``); the xlsx helpers keep text as text.
"""
from __future__ import annotations

import io
import logging
import math
import os
import string
from pathlib import Path

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # the XML-illegal control characters

from minimonkey_eval.eval.run.guards import load_own
from minimonkey_eval.eval.run.options import RunError
from minimonkey_eval.eval.run.store import PredictionStore, index_key, make_record
from minimonkey_eval.eval.runfiles.files import atomic_write_bytes
from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.eval.samples_sheet import SAMPLE_COLUMNS

logger = logging.getLogger(__name__)

# What the xlsx holds for a sample that could not be answered: VLMEvalKit's own failure message, which its MCQ
# matcher treats as "no answer" (can_infer_option), with no yes/no word for the Y/N extractor.
FAILED_PREDICTION = "Failed to obtain answer via API. (minimonkey-eval: sample failed, see the samples sheet)"
SUMMARY_HEAD = ("run_name", "model", "label", "demo")


class Writers:
    """The outputs of one run folder: ``summary`` holds the first columns of its summary row (``SUMMARY_HEAD``),
    ``prefix`` is VLMEvalKit's prediction file prefix (the model name, or the run name of a ``vlmeval:NAME`` run)."""

    def __init__(self, layout: RunLayout, prefix: str, summary: dict):
        self.layout = layout
        self.prefix = prefix
        self.summary = summary

    def merged(self, dataset) -> list[dict]:
        """One record per dataset row, in dataset order; a missing one is an error (never silently dropped)."""
        store = PredictionStore(self.layout.run_dir, dataset.dataset_name)
        by_key = load_own(store, dataset)
        keys = [index_key(i) for i in dataset.data["index"]]
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise RunError(f"{dataset.dataset_name}: {len(missing)} of {len(keys)} predictions missing after "
                           f"inference (e.g. index {missing[0]}); rerun the same command to fill them in")
        first: dict[str, int] = {}
        records = []
        for pos, k in enumerate(keys):
            if k in first:   # a repeated index: one prediction per index, so this row is a failed sample
                records.append(make_record(by_key[k]["index"], "", True,
                                           f"data: duplicate index {k} (row {pos}; first at row {first[k]}); "
                                           "only the first row with an index is inferred", image_path=""))
            else:
                first[k] = pos
                records.append(by_key[k])
        if len(first) < len(keys):
            logger.warning("%s: %d row(s) repeat an earlier index; recorded as failed samples",
                           dataset.dataset_name, len(keys) - len(first))
        store.write_merged(records)
        return records

    def prediction_file(self, name: str) -> Path:
        return self.layout.prediction_xlsx(self.prefix, name)

    def write_prediction_xlsx(self, dataset, records: list[dict]) -> Path:
        """VLMEvalKit's inference output: the dataset rows (image column dropped, columns bounded by
        :func:`sheet_columns`) + 'prediction'."""
        keep = sheet_columns(dataset.dataset_name, [c for c in dataset.data.columns if c != "image"])
        data = dataset.data[keep].copy()
        data["prediction"] = [FAILED_PREDICTION if r.get("failed") else xlsx_text(r["prediction"]) for r in records]
        path = self.prediction_file(dataset.dataset_name)
        write_xlsx(data, path)
        check_xlsx_roundtrip(path, data["prediction"].tolist())
        return path

    def write_samples(self, dataset, records: list[dict], per_sample) -> Path:
        import pandas as pd

        scores: dict[str, float] = {}
        if per_sample is not None and len(per_sample):
            scores = {index_key(i): float(s) for i, s in zip(per_sample["index"], per_sample["score"])}
        from minimonkey_eval.datasets.registry import CIRCULAR_OFFSET, get_benchmark

        circular = get_benchmark(dataset.dataset_name).circular
        data = dataset.data
        rows = []
        for (_, line), record in zip(data.iterrows(), records):
            key = index_key(line["index"])
            score = scores.get(key)
            if score is None and circular:
                try:
                    score = scores.get(str(int(key) % CIRCULAR_OFFSET))
                except ValueError:
                    score = None
            rows.append({"index": record["index"], "question": line.get("question", ""),
                         "answer": line.get("answer", ""), "prediction": record["prediction"],
                         "score": math.nan if score is None else score,
                         "image_path": record.get("image_path", ""), "failed": bool(record.get("failed")),
                         "reason": record.get("reason", "")})
        path = self.layout.samples_csv(dataset.dataset_name)
        pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS)).to_csv(path, index=False)
        return path

    def write_summary(self) -> Path:
        """summary.csv / .xlsx: one row, the headline of every dataset scored in this folder; empty = not run."""
        import pandas as pd

        from minimonkey_eval.datasets.registry import BENCHMARKS, PAPER_COLUMNS

        values: dict[str, float] = {}
        for bench in BENCHMARKS:
            f = self.layout.score_csv(bench.vlmeval_name)
            if bench.column not in PAPER_COLUMNS or not f.exists():
                continue
            column = bench.column
            df = pd.read_csv(f)
            hit = df[df["metric"].astype(str) == "headline"]
            if len(hit):
                value = pd.to_numeric(hit["value"], errors="coerce").iloc[0]
                if not pd.isna(value):
                    values[column] = float(value)
        row = {k: self.summary.get(k) for k in SUMMARY_HEAD}
        row.update({c: values.get(c, math.nan) for c in PAPER_COLUMNS})
        df = pd.DataFrame([row], columns=[*SUMMARY_HEAD, *PAPER_COLUMNS])
        path = self.layout.summary_csv
        tmp = path.with_name(f".{path.name}.tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
        buffer = io.BytesIO()
        df.to_excel(buffer, index=False)
        atomic_write_bytes(self.layout.summary_xlsx, buffer.getvalue())
        return path


# What a prediction sheet holds at most besides the columns scoring reads: real benchmark TSVs have ~5-25 columns;
# a TSV with 10^4-10^6 would exceed an xlsx sheet (16,384 columns) or take minutes to write.
MAX_OTHER_COLUMNS = 64
# Columns VLMEvalKit's evaluate() / build_prompt read in some benchmark (beyond each Benchmark's own ``columns``):
# MCQ options A-Z, hints, categories and splits, MathVista's metadata.
SCORED_COLUMNS = ("index", "question", "hint", "answer", "category", "l2-category", "split", "image_path",
                  *string.ascii_uppercase, "question_type", "answer_type", "choices", "answer_option", "precision",
                  "unit", "task", "skills", "context", "grade", "source", "options")


def sheet_columns(name: str, columns: list) -> list:
    """The dataset columns the prediction sheet keeps, in TSV order: every column scoring reads (``SCORED_COLUMNS``
    and the benchmark's ``columns``) and the first ``MAX_OTHER_COLUMNS`` others; the rest are named in one warning."""
    from minimonkey_eval.datasets.registry import get_benchmark

    try:
        needed = {*SCORED_COLUMNS, *get_benchmark(name).columns}
    except ValueError:   # a dataset outside the registry (a vlmeval:NAME run on another benchmark)
        needed = set(SCORED_COLUMNS)
    keep, dropped, others = [], [], 0
    for column in columns:
        if str(column) in needed:
            keep.append(column)
        elif others < MAX_OTHER_COLUMNS:
            keep.append(column)
            others += 1
        else:
            dropped.append(str(column))
    if dropped:
        shown = ", ".join(dropped[:5]) + (f", ... {dropped[-1]}" if len(dropped) > 5 else "")
        logger.warning("%s: the TSV has %d columns besides the image; the prediction sheet keeps %d (those scoring "
                       "reads and the first %d others) and leaves out %d: %s", name, len(columns), len(keep),
                       MAX_OTHER_COLUMNS, len(dropped), shown)
    return keep


def xlsx_text(text: str) -> str:
    """The prediction as an xlsx cell can hold it: XML-illegal control characters dropped (xlsxwriter would write
    them as literal '_x0008_' text, which is what vlmeval would then score)."""
    return ILLEGAL_CHARACTERS_RE.sub("", text)


def write_xlsx(data, path: Path) -> None:
    """``data.to_excel`` like vlmeval's ``dump`` (xlsxwriter), but text stays text: no formula, URL or number
    conversion (a prediction starting with '=' or 'http' would otherwise be mangled or dropped), atomically."""
    import pandas as pd

    options = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False, "in_memory": True}
    # rendered in memory, then one atomic write: a full disk or `ulimit -f` fails in that write (one clean OSError,
    # no half-closed zip file left to a finaliser, no temporary file left behind)
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="xlsxwriter", engine_kwargs={"options": options}) as writer:
        data.to_excel(writer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def check_xlsx_roundtrip(path: Path, predictions: list) -> None:
    """Warn when vlmeval's ``load`` of the xlsx does not give back the predictions we wrote."""
    import pandas as pd
    from vlmeval.smp import load

    back = load(str(path))["prediction"].tolist()

    def norm(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else str(v)

    bad = [i for i, (a, b) in enumerate(zip(predictions, back)) if norm(a) != norm(b)]
    if bad or len(back) != len(predictions):
        logger.warning("%s: %d prediction(s) changed in the xlsx round trip (first row %s); vlmeval scores the "
                       "xlsx text", path.name, len(bad), bad[:1])
