"""Benchmark registry: one record per paper column -> VLMEvalKit dataset -> headline in the paper's units.

Data, not code: every benchmark the harness knows is one `Benchmark` row in `BENCHMARKS`.
Look rows up with `get_benchmark(name)` (paper column or VLMEvalKit name, case-insensitive). Everything other
modules need to know about a benchmark is a field here (circular MCQ, answer extractor, fixture size), never found
again by matching substrings of its name.
"""
from __future__ import annotations

from dataclasses import dataclass

# VLMEvalKit circular MCQ copies: index = main index + k * CIRCULAR_OFFSET (its g_index = index % 1e6).
CIRCULAR_OFFSET = 1_000_000
# How the answer is taken out of a prediction before vlmeval's metric sees it (``Benchmark.answer_extractor``):
VLMEVAL_EVALUATE = "vlmeval"              # the dataset's own evaluate() does it (exact matching / rule metric / judge)
MATHVISTA_RULES = "mathvista-rules"       # vlmeval needs a GPT judge; offline we extract by rules, then MathVista_acc


@dataclass(frozen=True)
class Benchmark:
    column: str          # paper / report column name (matches the published-card CSV headers)
    vlmeval_name: str    # VLMEvalKit dataset name ($LMUData/<vlmeval_name>.tsv)
    kind: str            # VLMEvalKit DATASET_TYPE: 'Y/N', 'MCQ' or 'VQA'
    unit: str            # 'sum' (MME 0-2800), 'percent' (0-100), 'points1000' (OCRBench 0-1000)
    headline: str        # how the headline is read from vlmeval's score file (see scoring)
    submission_only: bool = False  # no public answers: produce the submission file, no score
    # TSV columns the VLMEvalKit class reads beyond index/question/image (its build_prompt + evaluate).
    columns: tuple[str, ...] = ()
    # Score file vlmeval's evaluate() writes: '<pred stem>...<score_suffix>.<csv|json>'.
    score_suffix: str = ""
    # Headline = combine(keys) * scale, keys in vlmeval's flatten_summary_metrics naming (fnmatch patterns,
    # each must match exactly one metric of the score file).
    headline_keys: tuple[str, ...] = ()
    combine: str = "one"         # 'one', 'sum' or 'mean' of the headline_keys values
    scale: float = 1.0           # to the paper's units (vlmeval's MCQ accuracies are fractions -> x100)
    circular: bool = False       # VLMEvalKit circular MCQ: rotated copies at index + k * CIRCULAR_OFFSET, one group
    answer_extractor: str = VLMEVAL_EVALUATE   # without a judge (see VLMEVAL_EVALUATE / MATHVISTA_RULES)
    fixture_rows: int = 6        # questions (groups) the synthetic fixture of this benchmark has by default


_MCQ = ("answer", "A", "B")  # vlmeval MCQ evaluate: answer letter + at least two options

# Paper columns, in the order of the Mini-Monkey card, then the extra columns the harness reports.
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("MME", "MME", "Y/N", "sum", "perception+reasoning",
              columns=("answer", "category", "image_path"), score_suffix="_score",
              headline_keys=("perception", "reasoning"), combine="sum", fixture_rows=8),
    Benchmark("RealWorldQA", "RealWorldQA", "MCQ", "percent", "Overall",
              columns=_MCQ, score_suffix="_acc", headline_keys=("split=*|Overall",), scale=100.0),
    Benchmark("AI2D", "AI2D_TEST", "MCQ", "percent", "Overall",
              columns=_MCQ, score_suffix="_acc", headline_keys=("split=*|Overall",), scale=100.0),
    Benchmark("CCBench", "CCBench", "MCQ", "percent", "Overall",
              columns=_MCQ, score_suffix="_acc", headline_keys=("split=*|Overall",), scale=100.0, circular=True),
    Benchmark("SEEDBench_IMG", "SEEDBench_IMG", "MCQ", "percent", "Overall",
              columns=_MCQ, score_suffix="_acc", headline_keys=("split=*|Overall",), scale=100.0, fixture_rows=9),
    Benchmark("HallusionBench", "HallusionBench", "Y/N", "percent", "mean(aAcc,fAcc,qAcc)",
              columns=("answer", "category", "l2-category"), score_suffix="_score",
              headline_keys=("split=Overall|aAcc", "split=Overall|fAcc", "split=Overall|qAcc"), combine="mean", fixture_rows=2),
    Benchmark("POPE", "POPE", "Y/N", "percent", "Overall F1",
              columns=("answer", "category"), score_suffix="_score", headline_keys=("split=Overall|Overall",), fixture_rows=9),
    Benchmark("MathVista", "MathVista_MINI", "VQA", "percent", "Overall",
              columns=("answer", "question_type", "answer_type", "choices", "answer_option", "task", "skills"),
              score_suffix="_score", headline_keys=("Task&Skill=Overall|acc",), answer_extractor=MATHVISTA_RULES, fixture_rows=8),
    Benchmark("DocVQA", "DocVQA_VAL", "VQA", "percent", "Overall ANLS",
              columns=("answer",), score_suffix="_acc", headline_keys=("Overall",)),
    Benchmark("ChartQA", "ChartQA_TEST", "VQA", "percent", "Overall",
              columns=("answer",), score_suffix="_acc", headline_keys=("Overall",), fixture_rows=8),
    Benchmark("InfoVQA", "InfoVQA_VAL", "VQA", "percent", "Overall ANLS",
              columns=("answer",), score_suffix="_acc", headline_keys=("Overall",)),
    Benchmark("TextVQA", "TextVQA_VAL", "VQA", "percent", "Overall",
              columns=("answer",), score_suffix="_acc", headline_keys=("Overall",)),
    Benchmark("OCRBench", "OCRBench", "VQA", "points1000", "Final Score",
              columns=("answer", "category"), score_suffix="_score", headline_keys=("Final Score",), fixture_rows=10),
    Benchmark("MMMU", "MMMU_DEV_VAL", "MCQ", "percent", "validation",
              columns=_MCQ + ("split",), score_suffix="_acc",
              headline_keys=("split=validation|Overall",), scale=100.0),
    Benchmark("MMBench_EN", "MMBench_DEV_EN", "MCQ", "percent", "Overall",
              columns=_MCQ, score_suffix="_acc", headline_keys=("split=*|Overall",), scale=100.0, circular=True),
    Benchmark("MMBench_CN", "MMBench_DEV_CN", "MCQ", "percent", "Overall",
              columns=_MCQ, score_suffix="_acc", headline_keys=("split=*|Overall",), scale=100.0, circular=True),
    Benchmark("DocVQA_TEST", "DocVQA_TEST", "VQA", "percent", "submission", submission_only=True),
    Benchmark("InfoVQA_TEST", "InfoVQA_TEST", "VQA", "percent", "submission", submission_only=True),
)

# The 16 scored columns of the report, in order.
PAPER_COLUMNS: tuple[str, ...] = tuple(b.column for b in BENCHMARKS if not b.submission_only)
# The 16 VLMEvalKit datasets `--data all` runs.
DEFAULT_DATASETS: tuple[str, ...] = tuple(b.vlmeval_name for b in BENCHMARKS if not b.submission_only)


def get_benchmark(name: str) -> Benchmark:
    """Look a benchmark up by paper column or VLMEvalKit name; unknown names raise a one-line ValueError."""
    key = name.strip().lower()
    for b in BENCHMARKS:
        if key in (b.column.lower(), b.vlmeval_name.lower()):
            return b
    known = ", ".join(b.vlmeval_name for b in BENCHMARKS)
    raise ValueError(f"unknown dataset {name!r}; known: {known}")
