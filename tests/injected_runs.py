"""Run folders with injected answers (not a test module): no model, the runner's own path after inference.

`injected_run` runs `Runner` with `infer_dataset` replaced by writing chosen answers into the prediction store;
everything after that is the runner's: merge, VLMEvalKit prediction xlsx, vlmeval scoring, score sheets,
``<DATASET>_samples.csv``, summary and run.json. Each row gets a right, wrong or partial answer by a seeded
draw (the first three rows: wrong, partial, right), and the draws are returned so tests can compute the expected numbers on their own.
"""
from __future__ import annotations

import ast
import random
import zlib
from collections import Counter
from pathlib import Path

from minimonkey_eval.datasets.fixtures import CIRCULAR_OFFSET
from minimonkey_eval.datasets.registry import get_benchmark
from minimonkey_eval.eval.run.guards import stamp
from minimonkey_eval.eval.run.store import PredictionStore, index_key, make_record
from minimonkey_eval.eval.run.runner import RunOptions, Runner
from test_scoring import right_answer, wrong_answer

PARTIAL = "partial"
FIRST_ROWS = ("wrong", PARTIAL, "right")   # every dataset mixes right, wrong and partial answers


def outcome(name: str, index, p_right: float, seed: int) -> str:
    """'right', 'wrong' or 'partial' (fractional ANLS / VQA score, 'Unknown' for Y/N) for one row."""
    u = random.Random(zlib.crc32(f"{name}:{index}:{seed}".encode())).random()
    if u < p_right:
        return "right"
    return PARTIAL if u > 0.85 else "wrong"


def partial_answer(name: str, row) -> str:
    kind = get_benchmark(name).kind
    if kind == "Y/N":
        return "It is hard to say."                      # neither yes nor no: vlmeval extracts 'Unknown'
    if name in ("DocVQA_VAL", "InfoVQA_VAL"):
        a = str(ast.literal_eval(str(row["answer"]))[0])
        return a[:-1] + ("x" if a[-1:] != "x" else "y") if len(a) >= 3 else "zzzz"   # ANLS 1 - 1/len
    if name == "TextVQA_VAL":
        counts = Counter(ast.literal_eval(str(row["answer"])))
        return min(counts, key=counts.get)                 # an answer few annotators gave: VQA score < 1
    return wrong_answer(name, row)


def answer_for(name: str, row, kind: str) -> str:
    if "answer" not in row:
        return "no answer key"
    if kind == "right":
        return right_answer(name, row)
    return partial_answer(name, row) if kind == PARTIAL else wrong_answer(name, row)


class InjectedRunner(Runner):
    p_right = 0.6
    seed = 0
    drawn: dict[str, dict[str, str]]

    def kind(self, name: str, key: str, position: int) -> str:
        """A circular rotation (index + k * 1e6) answers like its main question, so whole groups vary."""
        if get_benchmark(name).circular:
            position = int(key) % CIRCULAR_OFFSET
            key = str(position)
        if position < len(FIRST_ROWS):
            return FIRST_ROWS[position]
        return outcome(name, key, self.p_right, self.seed)

    def infer_dataset(self, dataset) -> int:
        name = dataset.dataset_name
        store = PredictionStore(self.run_dir, name)
        done = store.load()
        records, draws = [], self.drawn.setdefault(name, {})
        for i in range(len(dataset.data)):
            line = dataset.data.iloc[i]
            key = index_key(line["index"])
            if key in done:
                continue
            kind = self.kind(name, key, i)
            draws[key] = kind
            paths = dataset.dump_image(line)
            records.append(stamp([make_record(line["index"], answer_for(name, line, kind),
                                              image_path=";".join(map(str, paths)))], [line], name)[0])
        with store.writer(0) as writer:
            writer.append(records)
        return len(records)


def injected_run(work_dir: Path, lmudata: Path, checkpoint: Path, model: str, run_name: str, p_right: float,
                 seed: int, datasets: list[str], limit: int | None = None, msac: bool = False):
    """A run folder whose answers are drawn per row (p_right right, else wrong or partial); returns
    (run_dir, {dataset: {index: 'right'|'wrong'|'partial'}})."""
    opts = RunOptions(model=model, datasets=list(datasets), model_path=str(checkpoint), data_root=str(lmudata),
                      work_dir=str(work_dir), run_name=run_name, limit=limit, msac=msac, overwrite=True,
                      batch_size=1, device="cpu")
    runner = InjectedRunner(opts)
    runner.p_right, runner.seed, runner.drawn = p_right, seed, {}
    result = runner.run()
    return result.run_dir, runner.drawn
