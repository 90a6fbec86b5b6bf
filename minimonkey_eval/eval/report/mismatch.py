"""Why a reproduction may not match the card: per benchmark, the known reasons, read from one run folder.

``mismatch_reasons(run_dir)`` is a pure function over the run folder's ``run.json``, ``summary.csv`` and
``{DATASET}_samples.csv`` (nothing is recomputed, no model or vlmeval is loaded). For a run whose model has a
published card row, it returns one :class:`Mismatch` per scored benchmark with a published number: our headline,
the card's, the gap, and the reasons that can explain a gap, each a :class:`Reason` (``kind``, one line of text):

``config`` (MSAC/SCM differ from the card's: an ablation, not a reproduction), ``split`` (VAL here vs the card's
server TEST), ``tiles`` (profile, row and the file and lines it was read from; an override), ``dtype``,
``attention`` (kernel), ``versions`` (transformers/torch against the authors' pins), ``extraction`` (rule-based vs
judge), ``failed``, ``oom_retried`` (answered with fewer tiles), ``oom_fallback`` (the authors' file would have
answered 'A'), ``limit`` and ``demo``. The report wires it in (not here).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from minimonkey_eval.datasets.registry import AnswerExtractor, get_benchmark
from minimonkey_eval.eval.report.published import SPLIT_NOTES, published_config, published_reference
from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.eval.runfiles.record import RunRecordError, read_run_record
from minimonkey_eval.eval.samples_sheet import read_samples_csv
from minimonkey_eval.models.tile_profiles import get_profile, match_row

# What the authors ran (the Monkey repo's eval code and requirements.txt): the reference for dtype / versions.
AUTHORS_DTYPE = "bfloat16"
AUTHORS_VERSIONS = {"transformers": "4.37.2"}   # project/mini_monkey/requirements.txt (torch>=2, not pinned)
OOM_RETRIED_PREFIX = "oom: retried with tiles"


@dataclass(frozen=True)
class Reason:
    kind: str
    text: str


@dataclass
class Mismatch:
    dataset: str            # VLMEvalKit name
    column: str             # report column
    ours: float             # NaN when the run has no headline for it
    published: float
    source: str             # which card row
    reasons: list[Reason] = field(default_factory=list)

    @property
    def gap(self) -> float:
        return self.ours - self.published


def _summary(run_dir: Path) -> dict[str, float]:
    try:
        row = pd.read_csv(RunLayout(run_dir).summary_csv).iloc[0]
    except (FileNotFoundError, IndexError, pd.errors.EmptyDataError):
        return {}
    return {k: float(v) for k, v in pd.to_numeric(row, errors="coerce").items() if not pd.isna(v)}


def _samples(run_dir: Path, dataset: str) -> pd.DataFrame | None:
    path = RunLayout(run_dir).samples_csv(dataset)
    return read_samples_csv(path) if path.is_file() else None


def _attention(meta: dict) -> str:
    if meta.get("attn"):
        return str(meta["attn"])
    argv = [str(a) for a in meta.get("argv") or []]
    for i, arg in enumerate(argv):
        if arg.startswith("--attn="):
            return arg.split("=", 1)[1]
        if arg == "--attn" and i + 1 < len(argv):
            return argv[i + 1]
    return "sdpa"


def _tiles_reason(meta: dict, dataset: str) -> Reason:
    profile = meta.get("tile_profile") or "vlmevalkit"
    tile_model = meta.get("tile_model") or meta.get("model")
    record = (meta.get("tiles") or {}).get(dataset) or {}
    tiles = record.get("tiles", "?")
    if meta.get("tiles_override"):
        return Reason("tiles", f"tiles {meta['tiles_override']} given on the command line, not a published table")
    try:
        prof = get_profile(tile_model, profile)
        row = match_row(prof, dataset)
        where = f"{prof.source_file}, {row.source}"
    except ValueError:
        where = "unknown source"
    extra = ""
    if record.get("upscale_first"):
        extra += "; first image upscaled 2x at the first scale"
    return Reason("tiles", f"tile profile {profile}: {tiles}, max_new_tokens {record.get('max_new_tokens', '?')} "
                           f"({where}){extra}")


def _reasons(meta: dict, dataset: str, column: str, samples: pd.DataFrame | None) -> list[Reason]:
    out: list[Reason] = []
    model = meta.get("model")
    config = published_config(model)
    if config and (bool(meta.get("msac")), bool(meta.get("scm"))) != config:
        def on(flag):
            return "on" if flag else "off"

        out.append(Reason("config", f"MSAC {on(meta.get('msac'))}, SCM {on(meta.get('scm'))}; the card's setting is "
                                    f"MSAC {on(config[0])}, SCM {on(config[1])}: the gap is an ablation effect"))
    if column in SPLIT_NOTES:
        out.append(Reason("split", SPLIT_NOTES[column]))
    out.append(_tiles_reason(meta, dataset))
    dtype = meta.get("dtype") or "unknown"
    authors = "" if dtype == AUTHORS_DTYPE else f"; the authors ran {AUTHORS_DTYPE}"
    out.append(Reason("dtype", f"dtype {dtype}{authors}"))
    out.append(Reason("attention", f"attention kernel {_attention(meta)}; kernels differ in the last bits, which can "
                                   "flip greedy tokens"))
    versions = meta.get("versions") or {}
    parts = [f"transformers {versions.get('transformers')}", f"torch {versions.get('torch')}"]
    pinned = [f"{k} {v}" for k, v in AUTHORS_VERSIONS.items() if versions.get(k) != v]
    out.append(Reason("versions", ", ".join(parts) + (f"; the authors pin {', '.join(pinned)}" if pinned else "")))
    result = (meta.get("results") or {}).get(dataset) or {}
    extraction = result.get("extraction") or ""
    if extraction:
        judged = extraction.startswith("judge")
        if get_benchmark(dataset).answer_extractor is AnswerExtractor.MATHVISTA_RULES and not judged:
            out.append(Reason("extraction", f"{column} answers extracted {extraction}; published {column} "
                                            "numbers use a GPT judge to extract answers"))
        else:
            out.append(Reason("extraction", f"answers extracted by {extraction}"))
    rows, failed = result.get("rows"), result.get("failed") or 0
    if failed:
        out.append(Reason("failed", f"{failed} of {rows} samples failed (scored wrong)"))
    if samples is not None and "reason" in samples:
        retried = int(samples["reason"].str.startswith(OOM_RETRIED_PREFIX).sum())
        if retried:
            out.append(Reason("oom_retried", f"{retried} samples answered with fewer tiles after running out of "
                                             "memory"))
    if result.get("oom_fallbacks"):
        out.append(Reason("oom_fallback", f"{result['oom_fallbacks']} samples ran out of memory: the authors' file "
                                          "answers 'A' for them (not reproduced; counted as failed)"))
    limit = result.get("limit") or meta.get("limit")
    if limit:
        out.append(Reason("limit", f"only the first {limit} rows (--limit)"))
    if meta.get("demo"):
        out.append(Reason("demo", "demo run: random tiny model, numbers are meaningless"))
    return out


def mismatch_reasons(run_dir: str | Path) -> list[Mismatch]:
    """Per scored benchmark with a published number for this run's model: headline, card value, reasons.
    Empty when the folder has no (readable) run record or its model has no card row."""
    run_dir = Path(run_dir)
    try:
        record = read_run_record(run_dir, missing_ok=True)
    except RunRecordError:
        record = None
    meta = record.to_dict() if record is not None else {}
    ref = published_reference(meta.get("model")) if meta.get("model") else None
    if ref is None:
        return []
    values, sources = ref
    summary = _summary(run_dir)
    out = []
    for dataset in meta.get("datasets") or list(meta.get("results") or {}):
        try:
            bench = get_benchmark(dataset)
        except ValueError:
            continue
        published = float(values.get(bench.column, math.nan))
        if math.isnan(published):
            continue
        ours = summary.get(bench.column, math.nan)
        out.append(Mismatch(bench.vlmeval_name, bench.column, ours, published, str(sources[bench.column]),
                            _reasons(meta, bench.vlmeval_name, bench.column, _samples(run_dir, bench.vlmeval_name))))
    return out
