"""``minimonkey-eval sweep``: cost against accuracy over a grid of tile budgets x SCM ratios, one model, a few datasets.

Every grid point x dataset is an ordinary run folder ``{out}/{run_name}`` (run name from model + tiles + SCM, as
``run`` names it) filled by the runner (``eval.launch.make_runner``) on one engine loaded once for the whole grid.
When a point's dataset is scored, its row is appended to ``{out}/sweep.json`` (atomically); a rerun of the same
command skips every row already there (no inference, no scoring: an interrupted sweep resumes point by point, and
inside the interrupted point sample by sample, as ``run`` does). Several sweeps (e.g. Mini-Monkey's grid and the
InternVL2-2B baseline curve) may share one ``--out``: the table and charts cover every row of ``sweep.json``.

Per row: the headline with its 95% CI (:func:`point_ci`: the significance module's per-run CI), and the means
over answered samples of what the engine records per sample (``Engine.generate_prepared`` ->
``prepared.extra['stats']`` -> the prediction record): visual tokens after SCM, LLM prompt tokens, generated tokens,
latency (the wall time of the sample's batch); samples/s (samples inferred / inference seconds of the invocation
that finished the dataset) and peak memory (CUDA: peak allocated during that dataset; CPU: the process's peak RSS so
far, which only grows over a sweep).

Outputs: ``sweep.csv`` / ``sweep.xlsx``, per dataset ``{DATASET}_pareto.png`` (``sweep_charts``), ``sweep.md`` /
``sweep.html``. Reading ``sweep.json`` (and naming the row nearest a published score) is ``state.py``, which the
report imports instead of this module.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.backends.engine_backend import DEFAULT_TILE_PROFILE, default_run_name, split_tiles_option
from minimonkey_eval.eval.run.folder import utc_now
from minimonkey_eval.eval.run.options import RunOptions
from minimonkey_eval.eval.runfiles.files import atomic_write_text
from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.eval.runfiles.record import read_run_record
from minimonkey_eval.eval.sweep.state import STATE, SweepError, read_state
from minimonkey_eval.models.settings import ScmConfig

logger = logging.getLogger(__name__)

COLUMNS = ("model", "label", "tiles", "scm", "dataset", "column", "run_name", "rows", "failed", "headline", "ci_lo",
           "ci_hi", "ci_note", "visual_tokens", "prompt_tokens", "generated_tokens", "samples_per_s", "latency_s",
           "peak_mem_gb", "peak_mem_kind", "card_setting", "published", "limit", "finished")


@dataclass(frozen=True)
class Point:
    tiles: str                    # a tile profile name or a 'MIN-MAX[/MIN2-MAX2]' override
    scm_ratio: float | None       # None: SCM off

    @property
    def scm(self) -> str:
        return "off" if self.scm_ratio is None else f"{self.scm_ratio:g}"

    @property
    def scm_config(self) -> ScmConfig | None:
        return None if self.scm_ratio is None else ScmConfig(self.scm_ratio)


def parse_grid(tiles: str, scm: str) -> list[Point]:
    """``'vlmevalkit,4-12/3-7'`` x ``'off,0.5'`` -> the points, tiles-major."""
    tile_items = [t.strip() for t in str(tiles or DEFAULT_TILE_PROFILE).split(",") if t.strip()]
    ratios: list[float | None] = []
    for item in (s.strip().lower() for s in str(scm or "off").split(",") if s.strip()):
        if item in ("off", "none", "0"):
            ratios.append(None)
            continue
        try:
            value = float(item)
        except ValueError:
            raise SweepError(f"--scm {item!r}: use 'off' or a ratio in (0, 1], e.g. --scm off,0.25,0.5") from None
        if not 0.0 < value <= 1.0:
            raise SweepError(f"--scm {item!r}: a ratio must be in (0, 1]")
        ratios.append(value)
    if not tile_items or not ratios:
        raise SweepError("sweep: empty grid (give --tiles and --scm values)")
    return [Point(t, r) for t in dict.fromkeys(tile_items) for r in dict.fromkeys(ratios)]


def run_name_for(model: str, point: Point) -> str:
    profile, override = split_tiles_option(point.tiles)
    return default_run_name(model, False, point.scm_config, profile, override)


# --------------------------------------------------------------------------------------------------- state
def _write_state(out: Path, state: dict) -> None:
    rows = {key: {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            for key, row in state["rows"].items()}
    atomic_write_text(Path(out) / STATE, json.dumps({**state, "rows": rows}, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------------------------------- per point
def point_ci(run_dir: Path, dataset: str) -> tuple[float, float, str]:
    """(lo, hi, note) of the 95% CI of a run folder's headline on ``dataset``: ``significance.run_ci`` over
    ``units.load_units``, the report's own per-run CI (Wilson or seeded bootstrap, by the units). NaN with the reason
    when there is none (too few units, a missing vlmeval file): never a made-up interval."""
    from minimonkey_eval.eval.stats.significance import run_ci
    from minimonkey_eval.eval.stats.units import load_units

    record = read_run_record(run_dir)
    try:
        ci = run_ci(load_units(Path(run_dir), dataset, record.model))
    except (UserFacingError, ValueError) as exc:
        return math.nan, math.nan, f"no CI: {exc}"
    if math.isnan(ci.lo) or math.isnan(ci.hi):
        return ci.lo, ci.hi, f"no CI ({ci.note or 'too few units'})"
    return ci.lo, ci.hi, f"{ci.method} 95%"


def sample_stats(run_dir: Path, dataset: str) -> dict[str, float]:
    """Means over answered samples of the per-sample engine stats in the merged predictions file."""
    path = RunLayout(Path(run_dir)).merged(dataset)
    keys = ("visual_tokens", "prompt_tokens", "generated_tokens", "latency_s")
    sums = dict.fromkeys(keys, 0.0)
    n = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("failed") or "visual_tokens" not in record:
            continue
        n += 1
        for k in keys:
            sums[k] += float(record[k])
    return {k: (sums[k] / n if n else math.nan) for k in keys}


def peak_memory(device) -> tuple[float, str]:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30, "cuda peak allocated (this dataset)"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, "process peak RSS so far (CPU)"


def reset_peak_memory(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def card_setting(model: str, point: Point, dataset: str | None = None) -> bool:
    """The setting the model card's numbers were obtained with: the card's SCM and the tiles of VLMEvalKit's table for
    ``dataset`` (a budget equal to that row, e.g. InternVL2-2B ``1-24`` on OCRBench, counts too)."""
    from minimonkey_eval.models.registry import get_model
    from minimonkey_eval.models.tile_profiles import resolve_tiles

    if (point.scm_ratio is not None) != bool(get_model(model).published_scm):
        return False
    profile, override = split_tiles_option(point.tiles)
    try:
        mine = resolve_tiles(model, dataset, profile, override)
    except ValueError:
        return False
    return mine.describe() == resolve_tiles(model, dataset, DEFAULT_TILE_PROFILE).describe()


def published_score(model: str, dataset: str) -> float:
    from minimonkey_eval.datasets.registry import get_benchmark
    from minimonkey_eval.eval.report.published import published_reference

    ref = published_reference(model)
    column = get_benchmark(dataset).column
    if ref is None or column not in ref[0].index:
        return math.nan
    return float(ref[0][column])


def point_row(run_dir: Path, model: str, point: Point, dataset: str, peak: tuple[float, str]) -> dict:
    from minimonkey_eval.datasets.registry import get_benchmark

    record = read_run_record(run_dir)
    result = record.results[dataset]
    timing = record.timings.get("datasets", {}).get(dataset, {})
    inferred, seconds = timing.get("inferred") or 0, timing.get("inference_s") or 0.0
    lo, hi, note = point_ci(run_dir, dataset)
    headline = result.get("headline")
    return {"model": model, "label": record.label or model, "tiles": point.tiles, "scm": point.scm,
            "dataset": dataset, "column": get_benchmark(dataset).column, "run_name": record.run_name,
            "rows": result["rows"], "failed": result["failed"],
            "headline": math.nan if headline is None else float(headline), "ci_lo": lo, "ci_hi": hi, "ci_note": note,
            **sample_stats(run_dir, dataset),
            "samples_per_s": inferred / seconds if inferred and seconds > 0 else math.nan,
            "peak_mem_gb": peak[0], "peak_mem_kind": peak[1], "card_setting": card_setting(model, point, dataset),
            "published": published_score(model, dataset), "limit": result.get("limit"), "finished": utc_now()}


# --------------------------------------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    out: Path
    computed: list[str]           # row keys computed by this call
    skipped: list[str]            # row keys already in sweep.json
    csv: Path
    markdown: Path


def sweep(model: str, datasets, tiles: str, scm: str, out: str | Path = "results/sweep", model_path: str | None = None,
          data_root: str | None = None, limit: int | None = None, max_new_tokens: int | None = None,
          batch_size=None, dtype: str | None = None, device: str | None = None, attn: str = "sdpa",
          judge: str | None = None, engine=None, argv: list[str] | None = None,
          progress: bool | None = None, reuse: bool = True) -> SweepResult:
    """Run (or resume) the grid ``tiles x scm`` of ``model`` on ``datasets`` into ``out``; write table and charts
    (``reuse``: ``RunOptions.reuse``, the answers are the same either way)."""
    from minimonkey_eval.eval.backends.engine_backend import model_path_for
    from minimonkey_eval.eval.launch import make_runner
    from minimonkey_eval.eval.run.options import parse_datasets

    names = parse_datasets(datasets, allow_all=False)
    grid = parse_grid(tiles, scm)
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    state = read_state(out)
    computed, skipped = [], []
    setting = {"limit": limit, "max_new_tokens": max_new_tokens, "judge": judge}
    for point in grid:
        run_name = run_name_for(model, point)
        for dataset in names:
            key = f"{run_name}/{dataset}"
            old = state["rows"].get(key)
            if old is not None and old.get("setting") == setting and RunLayout(out / run_name).is_run_folder():
                skipped.append(key)
                continue
            if engine is None:
                from minimonkey_eval.models import Engine

                engine = Engine.from_pretrained(model_path_for(model, model_path), dtype=dtype, device=device,
                                                attn_implementation=attn)
            opts = RunOptions(model=model, datasets=[dataset], model_path=model_path, data_root=data_root,
                              work_dir=str(out), run_name=run_name, batch_size=batch_size, limit=limit,
                              scm=point.scm_config, tiles=point.tiles,
                              judge=judge, max_new_tokens=max_new_tokens, dtype=dtype, device=device, attn=attn,
                              argv=argv, progress=progress, reuse=reuse)
            reset_peak_memory(engine.device)
            result = make_runner(opts, engine=engine).run()
            row = point_row(result.run_dir, model, point, dataset, peak_memory(engine.device))
            state["rows"][key] = {**row, "setting": setting}
            _write_state(out, state)
            computed.append(key)
            logger.info("sweep %s: headline %s", key, row["headline"])
    csv, markdown = write_outputs(out, state)
    return SweepResult(out, computed, skipped, csv, markdown)


def table(state: dict):
    import pandas as pd

    rows = [{c: r.get(c) for c in COLUMNS} for r in state["rows"].values()]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for c in ("headline", "ci_lo", "ci_hi", "visual_tokens", "prompt_tokens", "generated_tokens", "samples_per_s",
              "latency_s", "peak_mem_gb", "published"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def write_outputs(out: Path, state: dict) -> tuple[Path, Path]:
    """sweep.csv / .xlsx, the per-dataset Pareto charts and sweep.md / .html from the rows of ``sweep.json``."""
    from minimonkey_eval.eval.sweep.charts import write_charts, write_pages

    df = table(state)
    csv = Path(out) / "sweep.csv"
    df.to_csv(csv, index=False)
    df.to_excel(Path(out) / "sweep.xlsx", index=False)
    charts = write_charts(df, Path(out))
    markdown = write_pages(df, Path(out), charts)
    return csv, markdown
