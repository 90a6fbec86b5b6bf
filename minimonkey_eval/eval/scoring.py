"""Headline numbers from VLMEvalKit's own metric code.

`score_dataset(name, eval_file)` runs the vlmeval dataset object's `evaluate()` on a predictions file
(`{model}_{dataset}.xlsx`: the dataset's columns + `prediction`), reads back the score file vlmeval wrote,
flattens it with vlmeval's `flatten_summary_metrics` (keys like 'split=Overall|aAcc') and turns the
registry's `headline_keys` into the paper's number (MME sum 0-2800, OCRBench points, percent elsewhere).

No judge (judge=None) means no network: MCQ and Y/N use `model='exact_matching'`; VQA/OCRBench metrics are
rule based anyway; MathVista, which vlmeval only scores through a GPT extractor, goes through an offline
rule-based extraction here and is then scored by vlmeval's own `MathVista_acc` (marked in `extraction`).
DocVQA_TEST / InfoVQA_TEST have no public answers: we write the official-server submission JSON instead.
"""
from __future__ import annotations

import ast
import contextlib
import fnmatch
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from minimonkey_eval.console import VLMEVAL_LOGGER, no_library_bars, quiet_logger
from minimonkey_eval.datasets.local import DataError, benchmark_for, import_vlmeval, load_dataset
from minimonkey_eval.datasets.mme import MME_CATEGORIES
from minimonkey_eval.datasets.registry import AnswerExtractor, Benchmark, Combine, Kind, PaperUnit, VqaMetric
from minimonkey_eval.eval.runfiles.files import atomic_write_bytes
from minimonkey_eval.eval.runfiles.layout import RunLayout

OFFLINE_MATHVISTA = "rule-based (offline)"
EXACT_MATCHING = "exact_matching"
RULE_METRIC = "rule-based metric"
RULE_EXTRACT_SUFFIX = "_rule_extract"       # MathVista offline storage: <stem>_rule_extract.xlsx
RULE_EXTRACT_LOG = "Rule-based extraction (offline)"
# vlmeval's ImageMCQDataset result-file naming for judges (name_str_map in evaluate_heuristic).
MCQ_JUDGE_FILE_NAMES = {"chatgpt-0125": "openai", "gpt-4-0125": "gpt4"}


@dataclass
class ScoreResult:
    dataset: str                 # VLMEvalKit name
    headline: float              # paper units; NaN for submission-only datasets
    subscores: pd.DataFrame      # long format: dataset, metric, value (+ one 'headline' row)
    score_files: list[Path]      # files vlmeval (or we) wrote next to the predictions
    notes: str = ""
    per_sample: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["index", "score"]))
    extraction: str = ""         # 'exact_matching', 'rule-based metric', 'rule-based (offline)', 'judge <model>'


# ----------------------------------------------------------------------------------------------- judge
def judge_settings(bench: Benchmark, judge) -> tuple[dict | None, str]:
    """(kwargs for dataset.evaluate, extraction label). None kwargs = the offline MathVista path.

    judge: None / 'exact_matching' (offline), a model name ('gpt-4o-mini'), or a dict of VLMEvalKit
    judge kwargs (model, api_base, key, nproc, ...) passed through as run.py would."""
    offline = judge is None or judge == EXACT_MATCHING
    is_mathvista = bench.answer_extractor is AnswerExtractor.MATHVISTA_RULES
    if offline and is_mathvista:
        return None, OFFLINE_MATHVISTA
    if offline:
        if bench.kind in (Kind.MCQ, Kind.YN):
            return {"model": EXACT_MATCHING}, EXACT_MATCHING
        return {}, RULE_METRIC
    kwargs = {"model": judge} if isinstance(judge, str) else dict(judge)
    if "model" not in kwargs:
        raise ValueError(f"judge kwargs need a 'model': {kwargs}")
    label = f"judge {kwargs['model']}" if bench.kind in (Kind.MCQ, Kind.YN) or is_mathvista else RULE_METRIC
    return kwargs, label


# ------------------------------------------------------------------------------------- vlmeval's files
def _cache_names(stem: str, model: str | None) -> list[str]:
    """Intermediate files vlmeval *reuses* if present (so stale ones would yield stale scores)."""
    names = [f"{stem}_auxmatch.*", f"{stem}_tmp.pkl", f"{stem}{RULE_EXTRACT_SUFFIX}.*"]
    if model:
        names += [f"{stem}_{MCQ_JUDGE_FILE_NAMES.get(model, model)}_result.pkl", f"{stem}_{model}.*"]
    return names


def clear_stale_caches(eval_file: Path, model: str | None) -> list[Path]:
    """Delete vlmeval's reusable intermediates that are older than the predictions file."""
    removed = []
    mtime = eval_file.stat().st_mtime
    for pattern in _cache_names(eval_file.stem, model):
        for path in eval_file.parent.glob(pattern):
            if path != eval_file and path.is_file() and path.stat().st_mtime < mtime:
                path.unlink()
                removed.append(path)
    return removed


def _snapshot(eval_file: Path) -> dict[Path, tuple[int, int]]:
    stem = eval_file.stem
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in eval_file.parent.iterdir()
            if p.is_file() and p.name.startswith(stem + "_")}


def _written_since(eval_file: Path, before: dict) -> list[Path]:
    after = _snapshot(eval_file)
    return sorted(p for p, sig in after.items() if before.get(p) != sig)


def _pick(files: list[Path], stem_suffix: str, exts: tuple[str, ...] = (".csv", ".json", ".xlsx", ".tsv")) -> Path:
    """The newest file whose stem ends with `stem_suffix`."""
    hits = [p for p in files if p.stem.endswith(stem_suffix) and p.suffix in exts]
    if not hits:
        raise DataError(f"vlmeval wrote no '*{stem_suffix}' file (wrote: {', '.join(p.name for p in files)})")
    return max(hits, key=lambda p: p.stat().st_mtime_ns)


def read_metrics(score_file: Path) -> dict[str, float]:
    """vlmeval's score file, flattened by vlmeval itself ('split=dev|Overall', 'Final Score', ...)."""
    from vlmeval.smp import load
    from vlmeval.smp.status_report import flatten_summary_metrics

    scores = load(str(score_file))
    if isinstance(scores, list):  # EVAL_FORMAT=json dumps DataFrames as a list of records
        scores = pd.DataFrame(scores)
    return {k: float(v) for k, v in flatten_summary_metrics(scores).items()}


def headline_from(bench: Benchmark, metrics: dict[str, float]) -> float:
    """combine(registry headline_keys) * scale; every key pattern must match exactly one metric. A benchmark whose
    headline is one split's (MMMU: validation) has no headline (NaN) when the rows scored hold none of that split
    (``--limit`` taking only dev rows): a number from the other split would not be the paper's."""
    split = bench.headline_split
    if split and not any(f"split={split}|" in k for k in metrics) and any(k.startswith("split=") for k in metrics):
        return math.nan
    values = []
    for pattern in bench.headline_keys:
        keys = [k for k in metrics if fnmatch.fnmatchcase(k, pattern)]
        if len(keys) != 1:
            raise DataError(f"{bench.vlmeval_name}: headline key {pattern!r} matches {keys or 'nothing'} "
                            f"in vlmeval's metrics {sorted(metrics)}")
        values.append(metrics[keys[0]])
    combine = {Combine.ONE: lambda v: v[0], Combine.SUM: sum, Combine.MEAN: lambda v: sum(v) / len(v)}[bench.combine]
    combined = combine(values)
    return float(combined) * bench.scale


def long_subscores(bench: Benchmark, metrics: dict[str, float], headline: float) -> pd.DataFrame:
    rows = [(bench.vlmeval_name, k, v * bench.scale) for k, v in metrics.items()]
    rows.append((bench.vlmeval_name, "headline", headline))
    return pd.DataFrame(rows, columns=["dataset", "metric", "value"])


# ------------------------------------------------------------------------------------------ per sample
def _per_sample_from(file: Path, column: str) -> pd.DataFrame:
    from vlmeval.smp import load

    data = load(str(file))
    return pd.DataFrame({"index": data["index"], "score": data[column].astype(float)})


def vqa_per_sample(bench: Benchmark, data: pd.DataFrame) -> pd.DataFrame:
    """Per-question score with vlmeval's own process_line + hit_calculate, with the benchmark's ``vqa_metric`` (the
    method vlmeval's evaluate() picks for it: ANLS, VQA score, relaxed accuracy)."""
    from vlmeval.dataset.utils.vqa_eval import hit_calculate, process_line

    method, name = str(bench.vqa_metric or VqaMetric.VQA_SCORE), bench.vlmeval_name
    scores = []
    for _, line in data.iterrows():
        line = line.copy()
        line["answer"], line["prediction"] = str(line["answer"]), str(line["prediction"])
        scores.append(float(hit_calculate([process_line(line, method=method)], name)[0]))
    return pd.DataFrame({"index": data["index"], "score": scores})


def ocrbench_hit(line) -> float:
    """vlmeval's OCRBench rule for one row: any answer is a substring of the prediction (case-folded;
    whitespace-free for handwritten math)."""
    answers = ast.literal_eval(str(line["answer"]))
    if line["category"] == "Handwritten Mathematical Expression Recognition":
        def norm(s):
            return str(s).strip().replace("\n", " ").replace(" ", "")
    else:
        def norm(s):
            return str(s).lower().strip().replace("\n", " ")
    pred = norm(line["prediction"])
    return float(any(norm(a) in pred for a in answers))


def mathvista_per_sample(storage: Path) -> pd.DataFrame:
    from vlmeval.dataset.utils.mathvista import post_check
    from vlmeval.smp import load

    data = load(str(storage))
    return pd.DataFrame({"index": data["index"],
                         "score": [float(bool(post_check(data.iloc[i], prefetch=False))) for i in range(len(data))]})


# ---------------------------------------------------------------------------------- MathVista offline
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _last_number(text: str) -> str | None:
    for tok in reversed(_NUMBER.findall(text)):
        tok = tok.replace(",", "")
        try:
            float(tok)
            return tok
        except ValueError:
            continue
    return None


def mathvista_rule_extract(line) -> tuple[str, str]:
    """(extracted answer, log) without a judge: vlmeval's prefetch first (it succeeds only when the raw
    prediction is already right), else option letter via vlmeval's can_infer / last number in the
    prediction (rounded to the question's precision) / the stripped prediction for text and list answers."""
    from vlmeval.dataset.utils.mathvista import list_to_dict, post_check
    from vlmeval.utils import can_infer

    pre = post_check(line, prefetch=True)
    if pre:
        return str(pre), "Prefetch succeed"
    pred = str(line["prediction"])
    if line["question_type"] == "multi_choice":
        choice = can_infer(pred, list_to_dict(ast.literal_eval(str(line["choices"]))))
        return (choice or ""), RULE_EXTRACT_LOG
    if line["answer_type"] in ("integer", "float"):
        num = _last_number(pred)
        if num is None:
            return "", RULE_EXTRACT_LOG
        value = float(num)
        if line["answer_type"] == "integer":
            return (str(int(value)) if value.is_integer() else num), RULE_EXTRACT_LOG
        precision = line.get("precision")
        if precision is not None and not pd.isna(precision):
            return f"{value:.{int(precision)}f}", RULE_EXTRACT_LOG
        return num, RULE_EXTRACT_LOG
    return pred.strip(), RULE_EXTRACT_LOG


def evaluate_mathvista_offline(eval_file: Path) -> Path:
    """What vlmeval's MathVista.evaluate does after its GPT step, with our rule extraction instead:
    storage `<stem>_rule_extract.xlsx` (res, log) -> vlmeval's MathVista_acc -> `<storage stem>_score.csv`."""
    from vlmeval.dataset.utils.mathvista import MathVista_acc
    from vlmeval.smp import dump, get_intermediate_file_path, load

    data = load(str(eval_file))
    extracted = [mathvista_rule_extract(data.iloc[i]) for i in range(len(data))]
    data["res"] = [r for r, _ in extracted]
    data["log"] = [log for _, log in extracted]
    storage = get_intermediate_file_path(str(eval_file), RULE_EXTRACT_SUFFIX)
    dump(data, storage)
    dump(MathVista_acc(storage), get_intermediate_file_path(storage, "_score", "csv"))
    return Path(storage)


# --------------------------------------------------------------------------------------- submissions
def _question_id(value):
    try:
        f = float(value)
        return int(f) if f.is_integer() else value
    except (TypeError, ValueError):
        return value


def write_submission(bench: Benchmark, eval_file: Path) -> Path:
    """`<stem>_submission.json`: [{"questionId": ..., "answer": "..."}], the format the DocVQA/InfoVQA
    servers take. questionId comes from a questionId/question_id column, else VLMEvalKit's index."""
    from vlmeval.smp import load

    data = load(str(eval_file))
    qcol = next((c for c in ("questionId", "question_id") if c in data.columns), "index")
    records = [{"questionId": _question_id(q), "answer": "" if pd.isna(p) else str(p).strip()}
               for q, p in zip(data[qcol], data["prediction"])]
    path = eval_file.with_name(f"{eval_file.stem}_submission.json")
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _submission_result(bench: Benchmark, eval_file: Path) -> ScoreResult:
    path = write_submission(bench, eval_file)
    n = len(json.loads(path.read_text(encoding="utf-8")))
    notes = (f"submission-only: no public answers; upload {path.name} ({n} answers) to "
             f"{bench.submission_server or 'the official server'}")
    subs = pd.DataFrame([(bench.vlmeval_name, "headline", math.nan)], columns=["dataset", "metric", "value"])
    from vlmeval.smp import load
    index = load(str(eval_file))["index"]
    return ScoreResult(bench.vlmeval_name, math.nan, subs, [path], notes,
                       pd.DataFrame({"index": index, "score": np.nan}), "submission")


# --------------------------------------------------------------------------------------------- notes
def _notes(bench: Benchmark, dataset, data: pd.DataFrame, extraction: str) -> str:
    notes = []
    n_meta, n_pred = len(dataset.data), len(data)
    if n_pred < n_meta:
        notes.append(f"predictions cover {n_pred} of {n_meta} rows; vlmeval scores only those")
    if bench.scale != 1.0:
        notes.append(f"vlmeval's accuracies are fractions; headline and sub-scores are x{bench.scale:g}")
    if bench.kind is Kind.MCQ and extraction == EXACT_MATCHING:
        notes.append("exact matching (no judge): a prediction with no recognisable option counts as wrong")
    if bench.circular:
        notes.append("circular evaluation: a question counts only if all its option rotations are right; "
                     "per_sample has one row per original question")
    full = f"0-{bench.paper_unit.full_scale:g}"
    if bench.paper_unit is PaperUnit.MME_SUM:
        cats = sorted(set(data["category"]))
        notes.append(f"headline = perception + reasoning sums of acc+acc+ per category ({len(cats)} of "
                     f"{len(MME_CATEGORIES)} categories present; full range {full})")
    if bench.paper_unit is PaperUnit.POINTS:
        notes.append(f"Final Score = number of correct answers ({n_pred} questions here; {full} on the full set)")
    if bench.answer_extractor is AnswerExtractor.MATHVISTA_RULES:
        if extraction == OFFLINE_MATHVISTA:
            notes.append("answers extracted by offline rules (vlmeval prefetch, option letter, last number), "
                         "not by the GPT judge VLMEvalKit uses; scored by vlmeval's MathVista_acc")
        notes.append("vlmeval's post_check never matches free-form text/list answers (str(None) bug)")
    return "; ".join(notes)


# ------------------------------------------------------------------------------------------------ main
@contextlib.contextmanager
def vlmeval_scoring_quiet(offline: bool, progress: bool):
    """Around vlmeval's ``evaluate``: offline, its log lines (the per-dataset "Exact Matching mode" warning: the
    score sheet's ``extraction`` column says it) and its bars are silenced; with a judge its warnings stay (a
    failing judge API is the user's to fix) and its bar stays when ``progress`` is on (judging takes minutes)."""
    with contextlib.ExitStack() as stack:
        if offline:
            stack.enter_context(quiet_logger(VLMEVAL_LOGGER))
        if offline or not progress:
            stack.enter_context(no_library_bars())
        yield


def score_dataset(name: str, eval_file, judge=None, data_root=None, progress: bool = False) -> ScoreResult:
    """Score a VLMEvalKit predictions file with the dataset's own evaluate(); see the module docstring.

    judge: None (offline), a judge model name, or a dict of VLMEvalKit judge kwargs.
    data_root: folder of the dataset TSVs ($LMUData by default), needed for MCQ answer keys.
    progress: show vlmeval's own progress bar while a judge scores (offline metrics take a moment: never a bar)."""
    bench = benchmark_for(name)
    import_vlmeval(data_root)
    from vlmeval.smp import load

    eval_file = Path(eval_file).resolve()
    if not eval_file.exists():
        raise DataError(f"{bench.vlmeval_name}: predictions file {eval_file} not found")
    if bench.submission_only:
        return _submission_result(bench, eval_file)

    dataset = load_dataset(bench.vlmeval_name, data_root=data_root)
    kwargs, extraction = judge_settings(bench, judge)
    clear_stale_caches(eval_file, None if kwargs is None else kwargs.get("model"))
    before = _snapshot(eval_file)
    storage = None
    with vlmeval_scoring_quiet(offline=extraction in (EXACT_MATCHING, RULE_METRIC, OFFLINE_MATHVISTA),
                               progress=progress):
        if kwargs is None:
            storage = evaluate_mathvista_offline(eval_file)
        else:
            dataset.evaluate(str(eval_file), **dict(kwargs))
    written = _written_since(eval_file, before)

    metrics = read_metrics(_pick(written, bench.score_suffix))
    headline = headline_from(bench, metrics)
    data = load(str(eval_file))
    per_sample = _per_sample(bench, eval_file, written, data, storage, kwargs)
    notes = _notes(bench, dataset, data, extraction)
    if math.isnan(headline):
        notes = "; ".join(filter(None, [notes, f"no headline: none of the rows scored is of the {bench.headline_split} "
                                               "split (--limit?)"]))
    return ScoreResult(bench.vlmeval_name, headline, long_subscores(bench, metrics, headline), written, notes,
                       per_sample, extraction)


def _per_sample(bench: Benchmark, eval_file: Path, written: list[Path], data: pd.DataFrame,
                storage: Path | None, kwargs: dict | None) -> pd.DataFrame:
    if bench.kind is Kind.YN:
        return _per_sample_from(_pick(written, "_auxmatch"), "score")
    if bench.kind is Kind.MCQ:
        return _per_sample_from(_pick(written, "_result", (".xlsx", ".tsv", ".json")), "hit")
    if bench.answer_extractor is AnswerExtractor.MATHVISTA_RULES:
        if storage is None:
            storage = _pick(list(eval_file.parent.glob(f"{eval_file.stem}_{kwargs['model']}.*")),
                            f"_{kwargs['model']}", (".xlsx", ".tsv", ".json"))
        return mathvista_per_sample(storage)
    if bench.vqa_metric is VqaMetric.OCRBENCH:
        return pd.DataFrame({"index": data["index"], "score": [ocrbench_hit(data.iloc[i]) for i in range(len(data))]})
    return vqa_per_sample(bench, data)


def write_score_sheets(result: ScoreResult, out_dir) -> tuple[Path, Path]:
    """The run folder's score sheets of the dataset (``RunLayout.score_csv`` / ``score_xlsx``; sheet 'scores' =
    subscores + extraction column; sheet 'notes' = notes, extraction and the vlmeval files behind the numbers)."""
    layout = RunLayout(Path(out_dir))
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    sheet = result.subscores.assign(extraction=result.extraction)
    csv_path, xlsx_path = layout.score_csv(result.dataset), layout.score_xlsx(result.dataset)
    sheet.to_csv(csv_path, index=False)
    info = pd.DataFrame({"field": ["notes", "extraction"] + ["score_file"] * len(result.score_files),
                         "value": [result.notes, result.extraction] + [str(p) for p in result.score_files]})
    buffer = io.BytesIO()   # rendered in memory, written atomically (a full disk: one clean OSError)
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        sheet.to_excel(writer, sheet_name="scores", index=False)
        info.to_excel(writer, sheet_name="notes", index=False)
    atomic_write_bytes(xlsx_path, buffer.getvalue())
    return csv_path, xlsx_path
