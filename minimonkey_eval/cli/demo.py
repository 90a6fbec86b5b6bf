"""``minimonkey-eval demo``: the whole pipeline on CPU in a few minutes, with a random tiny model.

fixtures (tiny original-format checkpoint + synthetic LMUData TSVs) -> run-all for ``MiniMonkey`` (MSAC) and
``InternVL2-2B`` (dynamic tiling) on all 16 datasets -> report. Layout under ``--out`` (default
``results/demo``)::

    fixtures/checkpoint/    fixtures/LMUData/       the inputs
    MiniMonkey/             InternVL2-2B/           run folders (summary.csv, score sheets, run record ...)
    report/report.md                                the comparison report

The tiny random model rarely emits ``<|im_end|>``, so answers are capped at ``max_new_tokens`` (8) and every run
is marked ``demo: true`` (run record, summary.csv), which the report prints as "demo: random tiny model".
A demo always starts fresh (its run folders are overwritten).

``family='1b'|'2b'|'4b'|'all'`` also writes tiny checkpoints of the Mini-InternVL2 family member(s)
(``fixtures/<key>/checkpoint``: Qwen2 for 1B, InternLM2 for 2B, Phi-3 for 4B) and runs each one with MSAC off and on,
so the report shows the family rows and the MSAC plug-and-play deltas.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from minimonkey_eval.cli.args import BATCH_SIZE_DEFAULT, add_engine_options, count, positive_int
from minimonkey_eval.eval.run.distributed import DistContext
from minimonkey_eval.eval.run.options import RunOptions, RunResult, parse_datasets
from minimonkey_eval.models.registry import MODELS

logger = logging.getLogger(__name__)

DEMO_MAX_NEW_TOKENS = 8
# Questions (or question groups) per dataset in the demo's fixtures, capped at each builder's own default: three
# still give every metric its groups (MME perception + reasoning, MMMU dev + validation, circular MCQ) while
# keeping the demo near a minute of inference per model on 2 CPU cores. None = the fixture defaults (6-10).
DEMO_ROWS = 3


@dataclass
class DemoResult:
    out: Path
    runs: list[RunResult]
    report: Path
    seconds: float


def fixture_rows(name: str, rows: int | None) -> int | None:
    """``n`` for ``write_sample_tsvs``: ``rows`` capped at the benchmark's fixture size (None: that size)."""
    from minimonkey_eval.datasets.registry import get_benchmark

    return None if rows is None else min(rows, get_benchmark(name).fixture_rows)


def demo(out: str | Path = "results/demo", max_new_tokens: int = DEMO_MAX_NEW_TOKENS, batch_size: int | None = None,
         device: str | None = None, dtype: str | None = None, datasets: list[str] | None = None,
         seed: int = 0, rows: int | None = DEMO_ROWS, family: str | None = None,
         progress: bool | None = None) -> DemoResult:
    from minimonkey_eval.datasets.fixtures import write_sample_tsvs
    from minimonkey_eval.datasets.registry import DEFAULT_DATASETS
    from minimonkey_eval.eval.launch import run  # lazy (as every heavy import here): torch, vlmeval
    from minimonkey_eval.eval.report.build import build_report
    from minimonkey_eval.models import Engine
    from minimonkey_eval.models.tiny_checkpoint import write_checkpoint

    t0 = time.monotonic()
    out = Path(out).expanduser().resolve()
    fixtures = out / "fixtures"
    checkpoint = write_checkpoint(fixtures / "checkpoint", seed=seed)
    lmudata = fixtures / "LMUData"
    datasets = list(datasets or DEFAULT_DATASETS)
    for name in datasets:
        write_sample_tsvs(lmudata, datasets=[name], n=fixture_rows(name, rows), seed=seed)
    engine = Engine.from_pretrained(checkpoint, dtype=dtype, device=device)  # one tiny engine serves both runs
    ctx = DistContext()
    runs = []
    for model in (spec.name for spec in MODELS.values() if spec.demo):
        opts = RunOptions(model=model, datasets=datasets, model_path=str(checkpoint),
                          data_root=str(lmudata), work_dir=str(out), run_name=model, batch_size=batch_size,
                          max_new_tokens=max_new_tokens, dtype=dtype, device=device, overwrite=True, demo=True,
                          progress=progress)
        result = run(opts, engine=engine, ctx=ctx)
        runs.append(result)
    if family:
        from minimonkey_eval.models.registry import fixture_models
        from minimonkey_eval.models.tiny_checkpoint import write_family

        family_names = fixture_models()

        for key, path in write_family(fixtures, family, seed=seed).items():
            member = Engine.from_pretrained(path, dtype=dtype, device=device)
            for msac in (False, True):
                if key == "2b" and not msac:
                    continue  # InternVL2-2B without MSAC already ran above
                name = family_names[key] + ("_msac" if msac else "")
                opts = RunOptions(model=family_names[key], datasets=datasets, model_path=str(path),
                                  data_root=str(lmudata), work_dir=str(out), run_name=name, batch_size=batch_size,
                                  max_new_tokens=max_new_tokens, dtype=dtype, device=device, msac=msac,
                                  overwrite=True, demo=True, progress=progress)
                result = run(opts, engine=member, ctx=ctx)
                runs.append(result)
    report = build_report(out, published="all").markdown  # every published row of both cards
    return DemoResult(out, runs, report, time.monotonic() - t0)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="fixtures + tiny random model + run-all for both models + report (CPU, minutes)")
    p.add_argument("--out", type=Path, default=Path("results/demo"), help="output folder (default results/demo)")
    p.add_argument("--max-new-tokens", type=positive_int, default=DEMO_MAX_NEW_TOKENS,
                   help="answer length cap (default 8: the random model rarely stops by itself)")
    p.add_argument("--batch-size", type=positive_int, default=None, help=BATCH_SIZE_DEFAULT)
    p.add_argument("--data", default="all", help="'all' or a comma-separated list of datasets")
    p.add_argument("--rows", type=count, default=DEMO_ROWS,
                   help="questions (or question groups) per dataset in the demo fixtures (default 3; 0 = the "
                        "fixture defaults, 6-10, about 2.5x slower)")
    p.add_argument("--family", default=None, choices=["1b", "2b", "4b", "all"],
                   help="also run the Mini-InternVL2 family member(s) on tiny checkpoints, MSAC off and on")
    add_engine_options(p)
    p.set_defaults(handler=command)


def command(args) -> int:
    datasets = parse_datasets(args.data, allow_all=True)
    result = demo(args.out, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, device=args.device,
                  dtype=args.dtype, datasets=datasets, rows=args.rows or None, family=args.family,
                  progress=args.progress)
    print(f"demo (random tiny model) finished in {result.seconds:.0f} s")
    for r in result.runs:
        print(f"summary: {r.summary_csv}")
    print(f"report: {result.report}")
    return 0
