"""Benchmark registry: one record per paper column -> VLMEvalKit dataset -> headline in the paper's units.

Data, not code: every benchmark the harness knows is one `Benchmark` row in `BENCHMARKS`. Look rows up with
`get_benchmark(name)` (paper column or VLMEvalKit name, case-insensitive). Everything other modules need to know
about a benchmark is a field here, never found again by matching its name: the VLMEvalKit type, the paper's units
(and with them the decimals, chart scale and gap tolerance the report uses), how the headline is read, circular
MCQ, the answer extractor, the per-sample VQA metric, the statistic over resampling units and the fixture size.
The allowed values of every choice field are one string enum each (`Kind`, `PaperUnit`, `Combine`,
`AnswerExtractor`, `VqaMetric`, `Statistic`, `UnitSource`, `Unit`). `resampling(bench)` is the one function that
turns a record into its resampling rule (what a unit is, where its scores come from, which statistic).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# VLMEvalKit circular MCQ copies: index = main index + k * CIRCULAR_OFFSET (its g_index = index % 1e6).
CIRCULAR_OFFSET = 1_000_000
# A per-sample score >= this counts as right (per-sample diff, flip lists, McNemar's discordant units).
RIGHT_THRESHOLD = 0.5
# |measured - published| above this is flagged in the report, for benchmarks without their own ``tolerance``.
DEFAULT_GAP_TOLERANCE = 0.5


class Choice(str, Enum):
    """A string enum (``enum.StrEnum`` before Python 3.11): members equal, print and format as their value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Kind(Choice):
    """VLMEvalKit's ``DATASET_TYPE``."""
    YN = "Y/N"
    MCQ = "MCQ"
    VQA = "VQA"


class PaperUnit(Choice):
    """The unit of the paper's headline."""
    PERCENT = "percent"          # 0-100
    MME_SUM = "sum"              # MME: perception + reasoning sum, 0-2800
    POINTS = "points1000"        # OCRBench: one point per right answer, 0-1000

    @property
    def full_scale(self) -> float:
        return {"percent": 100.0, "sum": 2800.0, "points1000": 1000.0}[self.value]

    @property
    def description(self) -> str:
        """In words, for the report's notes."""
        return {"percent": "percent (0-100)", "sum": "perception + reasoning sum (0-2800)",
                "points1000": "0-1000"}[self.value]


class Combine(Choice):
    """How ``headline_keys`` values make the headline."""
    ONE = "one"
    SUM = "sum"
    MEAN = "mean"


class AnswerExtractor(Choice):
    """How the answer is taken out of a prediction before vlmeval's metric sees it (without a judge)."""
    VLMEVAL = "vlmeval"                  # the dataset's own evaluate() (exact matching / rule metric / judge)
    MATHVISTA_RULES = "mathvista-rules"  # vlmeval needs a GPT judge; offline we extract by rules, then MathVista_acc


class VqaMetric(Choice):
    """vlmeval's per-question VQA metric (a ``process_line`` method, or OCRBench's own rule) and its name in words."""
    VQA_SCORE = "vqa_score"
    RELAXED_ACCURACY = "relaxed_accuracy"
    ANLS = "anls"
    OCRBENCH = "ocrbench"        # one point when an answer is a substring of the prediction

    @property
    def title(self) -> str:
        return {"vqa_score": "VQA accuracy", "relaxed_accuracy": "relaxed accuracy", "anls": "ANLS",
                "ocrbench": "1 point each"}[self.value]


class Statistic(Choice):
    """The statistic that turns summed resampling-unit components into the headline (``eval/stats/units.py``)."""
    MEAN = "mean"                # mean score x 100
    SUM = "sum"                  # sum of scores (OCRBench points)
    MME = "mme"                  # sum over categories of acc + acc+ (vlmeval's MME_rating)
    HALLUSION = "hallusion"      # mean(aAcc, fAcc, qAcc) (vlmeval's Hallusion_rating)
    POPE_F1 = "pope_f1"          # F1 of summed TP / FP / FN


class UnitSource(Choice):
    """The run-folder file holding the per-sample scores the units are built from."""
    SAMPLES = "samples"          # the runner's <DATASET>_samples.csv (VQA, OCRBench, MathVista)
    AUXMATCH = "auxmatch"        # vlmeval's <model>_<DATASET>_auxmatch (Y/N)
    MCQ_RESULT = "mcq_result"    # vlmeval's <model>_<DATASET>_<judge>_result (MCQ)


class Unit(Choice):
    """What one resampling unit is, in a word or two (table cells)."""
    QUESTION = "question"
    CIRCULAR_GROUP = "circular group"
    IMAGE_PAIR = "image pair"
    QUESTION_SET = "question set"


@dataclass(frozen=True)
class Benchmark:
    column: str          # paper / report column name (matches the published-card CSV headers)
    vlmeval_name: str    # VLMEvalKit dataset name ($LMUData/<vlmeval_name>.tsv)
    kind: Kind           # VLMEvalKit DATASET_TYPE
    paper_unit: PaperUnit  # the headline's units (and so its decimals and chart scale: see the properties)
    headline: str        # how the headline is read from vlmeval's score file, in words (see scoring)
    submission_only: bool = False  # no public answers: produce the submission file, no score
    # TSV columns the VLMEvalKit class reads beyond index/question/image (its build_prompt + evaluate).
    columns: tuple[str, ...] = ()
    # Score file vlmeval's evaluate() writes: '<pred stem>...<score_suffix>.<csv|json>'.
    score_suffix: str = ""
    # Headline = combine(keys) * scale, keys in vlmeval's flatten_summary_metrics naming (fnmatch patterns,
    # each must match exactly one metric of the score file).
    headline_keys: tuple[str, ...] = ()
    combine: Combine = Combine.ONE
    scale: float = 1.0           # to the paper's units (vlmeval's MCQ accuracies are fractions -> x100)
    circular: bool = False       # VLMEvalKit circular MCQ: rotated copies at index + k * CIRCULAR_OFFSET, one group
    answer_extractor: AnswerExtractor = AnswerExtractor.VLMEVAL
    vqa_metric: VqaMetric | None = None   # VQA: vlmeval's per-question metric (its evaluate() picks it by name)
    statistic: Statistic = Statistic.MEAN  # over resampling units (see ``resampling``)
    headline_split: str | None = None     # MCQ split the headline reads (None: the score file's only split)
    tolerance: float | None = None        # report: |gap| flagged above this (None: DEFAULT_GAP_TOLERANCE)
    split_note: str = ""         # when the published number comes from another split than the one scored here
    submission_server: str = ""  # submission-only: where the answers are uploaded
    fixture_rows: int = 6        # questions (groups) the synthetic fixture of this benchmark has by default
    title: str = ""              # report table header ('' = the column name)

    def __post_init__(self):
        if not self.title:
            object.__setattr__(self, "title", self.column)
        for name, choices in (("kind", Kind), ("paper_unit", PaperUnit), ("combine", Combine),
                              ("answer_extractor", AnswerExtractor), ("statistic", Statistic)):
            object.__setattr__(self, name, choices(getattr(self, name)))   # a plain string is checked and converted
        if self.vqa_metric is not None:
            object.__setattr__(self, "vqa_metric", VqaMetric(self.vqa_metric))

    # The paper unit's consequences, in one place: full scale, decimals shown, divisor to a common 0-100 chart scale.
    @property
    def chart_divisor(self) -> float:
        """Divides a headline (or a difference) to the charts' common 0-100 scale (MME ÷ 28, OCRBench ÷ 10)."""
        return self.paper_unit.full_scale / 100.0

    @property
    def decimals(self) -> int:
        """Decimals of a published or measured headline as the cards print it (OCRBench points: none)."""
        return 0 if self.paper_unit is PaperUnit.POINTS else 1

    @property
    def diff_decimals(self) -> int:
        """Decimals of a difference of headlines (report deltas and gaps): one more than the headline's."""
        return self.decimals + 1

    @property
    def stat_decimals(self) -> int:
        """Decimals of the statistics (paired Δ, CIs, MDE): 2 on a 0-100 scale, 1 on MME's and OCRBench's."""
        return 2 if self.paper_unit is PaperUnit.PERCENT else 1

    @property
    def gap_tolerance(self) -> float:
        return DEFAULT_GAP_TOLERANCE if self.tolerance is None else self.tolerance


_MCQ = ("answer", "A", "B")  # vlmeval MCQ evaluate: answer letter + at least two options
_YN, _MC, _VQA = Kind.YN, Kind.MCQ, Kind.VQA
_PCT = PaperUnit.PERCENT
_ACC = dict(score_suffix="_acc", headline_keys=("split=*|Overall",), scale=100.0)   # vlmeval MCQ accuracy file

# Paper columns, in the order of the Mini-Monkey card, then the extra columns the harness reports.
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("MME", "MME", _YN, PaperUnit.MME_SUM, "perception+reasoning",
              columns=("answer", "category", "image_path"), score_suffix="_score",
              headline_keys=("perception", "reasoning"), combine=Combine.SUM, statistic=Statistic.MME, tolerance=5.0,
              fixture_rows=8),
    Benchmark("RealWorldQA", "RealWorldQA", _MC, _PCT, "Overall", columns=_MCQ, **_ACC),
    Benchmark("AI2D", "AI2D_TEST", _MC, _PCT, "Overall", columns=_MCQ, **_ACC),
    Benchmark("CCBench", "CCBench", _MC, _PCT, "Overall", columns=_MCQ, **_ACC, circular=True),
    Benchmark("SEEDBench_IMG", "SEEDBench_IMG", _MC, _PCT, "Overall", columns=_MCQ, **_ACC, fixture_rows=9),
    Benchmark("HallusionBench", "HallusionBench", _YN, _PCT, "mean(aAcc,fAcc,qAcc)",
              columns=("answer", "category", "l2-category"), score_suffix="_score",
              headline_keys=("split=Overall|aAcc", "split=Overall|fAcc", "split=Overall|qAcc"), combine=Combine.MEAN,
              statistic=Statistic.HALLUSION, fixture_rows=2),
    Benchmark("POPE", "POPE", _YN, _PCT, "Overall F1",
              columns=("answer", "category"), score_suffix="_score", headline_keys=("split=Overall|Overall",),
              statistic=Statistic.POPE_F1, fixture_rows=9),
    Benchmark("MathVista", "MathVista_MINI", _VQA, _PCT, "Overall",
              columns=("answer", "question_type", "answer_type", "choices", "answer_option", "task", "skills"),
              score_suffix="_score", headline_keys=("Task&Skill=Overall|acc",),
              answer_extractor=AnswerExtractor.MATHVISTA_RULES, fixture_rows=8),
    Benchmark("DocVQA", "DocVQA_VAL", _VQA, _PCT, "Overall ANLS",
              columns=("answer",), score_suffix="_acc", headline_keys=("Overall",), vqa_metric=VqaMetric.ANLS,
              split_note="published = DocVQA test (server); harness scores DocVQA_VAL"),
    Benchmark("ChartQA", "ChartQA_TEST", _VQA, _PCT, "Overall",
              columns=("answer",), score_suffix="_acc", headline_keys=("Overall",),
              vqa_metric=VqaMetric.RELAXED_ACCURACY, fixture_rows=8),
    Benchmark("InfoVQA", "InfoVQA_VAL", _VQA, _PCT, "Overall ANLS",
              columns=("answer",), score_suffix="_acc", headline_keys=("Overall",), vqa_metric=VqaMetric.ANLS,
              split_note="published = InfoVQA test (server); harness scores InfoVQA_VAL"),
    Benchmark("TextVQA", "TextVQA_VAL", _VQA, _PCT, "Overall",
              columns=("answer",), score_suffix="_acc", headline_keys=("Overall",), vqa_metric=VqaMetric.VQA_SCORE),
    Benchmark("OCRBench", "OCRBench", _VQA, PaperUnit.POINTS, "Final Score",
              columns=("answer", "category"), score_suffix="_score", headline_keys=("Final Score",),
              vqa_metric=VqaMetric.OCRBENCH, statistic=Statistic.SUM, tolerance=5.0, fixture_rows=10),
    Benchmark("MMMU", "MMMU_DEV_VAL", _MC, _PCT, "validation",
              columns=_MCQ + ("split",), score_suffix="_acc",
              headline_keys=("split=validation|Overall",), scale=100.0, headline_split="validation"),
    Benchmark("MMBench_EN", "MMBench_DEV_EN", _MC, _PCT, "Overall", columns=_MCQ, **_ACC, circular=True,
              title="MMB-EN", split_note="published = MMBench-EN test; harness scores MMBench_DEV_EN"),
    Benchmark("MMBench_CN", "MMBench_DEV_CN", _MC, _PCT, "Overall", columns=_MCQ, **_ACC, circular=True,
              title="MMB-CN", split_note="published = MMBench-CN test; harness scores MMBench_DEV_CN"),
    Benchmark("DocVQA_TEST", "DocVQA_TEST", _VQA, _PCT, "submission", submission_only=True,
              vqa_metric=VqaMetric.ANLS,
              submission_server="the DocVQA challenge server (rrc.cvc.uab.es, DocVQA Task 1 - single page)"),
    Benchmark("InfoVQA_TEST", "InfoVQA_TEST", _VQA, _PCT, "submission", submission_only=True,
              vqa_metric=VqaMetric.ANLS,
              submission_server="the DocVQA challenge server (rrc.cvc.uab.es, Task 3 - InfographicsVQA)"),
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


# ----------------------------------------------------------------------------------------------- resampling
@dataclass(frozen=True)
class Resampling:
    """How a benchmark's headline is recomputed from resampling units (``eval/stats/units.py`` builds them)."""
    dataset: str               # VLMEvalKit name
    unit: Unit                 # what one unit is, in a word or two
    description: str           # the same in full (report notes, README)
    source: UnitSource         # the run-folder file holding the per-sample scores
    statistic: Statistic
    scale: float               # paper units per unit of mean score (100 for percent; 1 for a points sum)
    split: str | None          # MCQ split the headline reads (None: the file's only split)


_GROUPED_UNITS = {   # statistics over grouped units: the unit and its description
    Statistic.MME: (Unit.IMAGE_PAIR, "image pair (category, image_path), stratified by category"),
    Statistic.HALLUSION: (Unit.QUESTION_SET, "question set (l2-category, set id) with its figure and question groups"),
    Statistic.POPE_F1: (Unit.QUESTION, "question (weighted by the number of POPE splits listing it); F1 recomputed"),
}
_SOURCES = {Kind.YN: UnitSource.AUXMATCH, Kind.MCQ: UnitSource.MCQ_RESULT, Kind.VQA: UnitSource.SAMPLES}


def resampling(bench: Benchmark | str) -> Resampling:
    """The resampling rule of a benchmark, from its record: the unit follows from the statistic (grouped ones),
    circular MCQ (one unit per group of rotations) or else is one question; the source file from the VLMEvalKit
    type; the scale from the paper unit. Raises ValueError for a submission-only benchmark (no answers)."""
    b = bench if isinstance(bench, Benchmark) else get_benchmark(bench)
    if b.submission_only:
        raise ValueError(f"{b.vlmeval_name}: no resampling units (submission-only benchmark: no public answers)")
    if b.statistic in _GROUPED_UNITS:
        unit, text = _GROUPED_UNITS[b.statistic]
    elif b.circular:
        unit, text = Unit.CIRCULAR_GROUP, "circular group (all rotations of one question)"
    elif b.headline_split:
        unit, text = Unit.QUESTION, f"question of the {b.headline_split} split"
    elif b.vqa_metric is not None:
        unit, text = Unit.QUESTION, f"question ({b.vqa_metric.title})"
    else:
        unit, text = Unit.QUESTION, "question"
    scale = 1.0 if b.paper_unit is PaperUnit.POINTS else 100.0
    return Resampling(b.vlmeval_name, unit, text, _SOURCES[b.kind], b.statistic, scale, b.headline_split)
