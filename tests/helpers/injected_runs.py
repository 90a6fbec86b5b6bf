"""Run folders with injected answers (not a test module): no model, the runner's own path after inference.

`injected_run` runs `Runner` with a backend (`InjectedBackend`: the engine backend's settings, no model) whose
pipeline answers each row with a chosen answer; everything else is the runner's: resume, the prediction store,
merge, VLMEvalKit prediction xlsx, vlmeval scoring, score sheets, ``<DATASET>_samples.csv``, summary and run.json.
Each row gets a right, wrong or partial answer by a seeded draw (the first three rows: wrong, partial, right), and the
draws are returned so tests can compute the expected numbers on their own.
"""
from __future__ import annotations

import ast
import random
import zlib
from collections import Counter
from pathlib import Path

from helpers.known_answers import right_answer, wrong_answer
from minimonkey_eval.datasets.fixtures import CIRCULAR_OFFSET
from minimonkey_eval.datasets.registry import get_benchmark
from minimonkey_eval.eval.backends.engine_backend import EngineBackend
from minimonkey_eval.eval.run.distributed import DistContext
from minimonkey_eval.eval.run.options import RunOptions
from minimonkey_eval.eval.run.runner import Runner
from minimonkey_eval.eval.run.store import index_key
from minimonkey_eval.models.planning import Job

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


class InjectedBackend(EngineBackend):
    """The engine backend's identity and run record; its pipeline answers from seeded draws instead of a model."""

    def __init__(self, opts: RunOptions, p_right: float, seed: int):
        super().__init__(opts, DistContext())
        self.p_right, self.seed = p_right, seed
        self.drawn: dict[str, dict[str, str]] = {}
        self._positions: dict[str, int] = {}

    def kind(self, name: str, key: str, position: int) -> str:
        """A circular rotation (index + k * 1e6) answers like its main question, so whole groups vary."""
        if get_benchmark(name).circular:
            position = int(key) % CIRCULAR_OFFSET
            key = str(position)
        if position < len(FIRST_ROWS):
            return FIRST_ROWS[position]
        return outcome(name, key, self.p_right, self.seed)

    def pipeline(self, dataset, profile=None):
        positions: dict[str, int] = {}
        for i, value in enumerate(dataset.data["index"]):
            positions.setdefault(index_key(value), i)
        self._positions = positions
        return self

    def run(self, sources, describe):
        yield [describe(line) for line in sources]

    def describe(self, dataset, line) -> Job:
        name = dataset.dataset_name
        key = index_key(line["index"])
        kind = self.kind(name, key, self._positions[key])
        self.drawn.setdefault(name, {})[key] = kind
        paths = dataset.dump_image(line)
        return Job(key=line["index"], answer=answer_for(name, line, kind),
                   extra={"message": [{"type": "image", "value": str(p)} for p in paths]})


def injected_run(work_dir: Path, lmudata: Path, checkpoint: Path, model: str, run_name: str, p_right: float,
                 seed: int, datasets: list[str], limit: int | None = None, msac: bool = False):
    """A run folder whose answers are drawn per row (p_right right, else wrong or partial); returns
    (run_dir, {dataset: {index: 'right'|'wrong'|'partial'}})."""
    opts = RunOptions(model=model, datasets=list(datasets), model_path=str(checkpoint), data_root=str(lmudata),
                      work_dir=str(work_dir), run_name=run_name, limit=limit, msac=msac, overwrite=True,
                      batch_size=1, device="cpu")
    backend = InjectedBackend(opts, p_right, seed)
    result = Runner(opts, backend).run()
    return result.run_dir, backend.drawn
