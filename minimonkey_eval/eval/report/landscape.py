"""Report section "Where the runs sit": published rows of both cards, ranks, parameters-vs-score charts.

``--published card|all|NAME,...`` picks the published rows shown (``card``, the default: every card row of a model
with at most 4B parameters, plus the rows publishing a model that has a measured run). Per benchmark, each measured
run gets its rank among the shown published rows (the same model on both cards counts once), and one scatter PNG
per benchmark plots score against parameters (log scale): published rows as labelled points, measured runs as red
stars (a dashed line when the run's size is unknown). ``section`` builds it for ``build.SECTIONS``: it writes the
PNGs and returns the blocks and sheets.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from minimonkey_eval.datasets.registry import PAPER_COLUMNS
from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.report import published as pub
from minimonkey_eval.eval.report.collect import ReportContext
from minimonkey_eval.eval.report.render import (
    Heading,
    Image,
    Note,
    Only,
    Section,
    Sheet,
    Table,
    column_title,
    number_cell,
    split_note,
    text_cell,
    value_cell,
)
from minimonkey_eval.eval.runfiles.layout import RUN_JSON

SMALL_PARAMS_B = 4.0          # 'card' selection: models up to this many billion parameters (the 2B class)
SELECTIONS = ("card", "all")
SHEET = "landscape"
CHART_SHEET = "landscape charts"
SECTION_TITLE = "Where the runs sit: published models"
_RUN_COLOUR = "#d62728"


class PublishedSelectionError(UserFacingError):
    """``--published`` names a row no card has."""


# ----------------------------------------------------------------------------------------------- selection
def parse_published(text: str | None) -> str | list[str]:
    """``None``/'card' -> 'card'; 'all' -> 'all'; 'A,B' -> the landscape keys of rows A and B (row name, label or
    key, case-insensitive). An unknown name raises ``PublishedSelectionError`` listing the known ones."""
    if text is None or not str(text).strip() or str(text).strip().lower() == "card":
        return "card"
    if str(text).strip().lower() == "all":
        return "all"
    rows = pub.all_published()
    lookup: dict[str, list[str]] = {}
    for key, name, label in zip(rows["key"], rows["name"], rows["label"]):
        for alias in {key, name, label}:
            lookup.setdefault(alias.lower(), []).append(key)
    keys: list[str] = []
    for item in (x.strip() for x in str(text).split(",")):
        if not item:
            continue
        if item.lower() not in lookup:
            known = ", ".join(rows["label"])
            raise PublishedSelectionError(f"--published {item!r}: no published row of that name; use card, all or "
                                          f"names from: {known}")
        keys += [k for k in lookup[item.lower()] if k not in keys]
    return keys or "card"


def select_published(selection: str | list[str], runs: list) -> pd.DataFrame:
    """The published rows shown: ``pub.all_published()`` rows picked by ``parse_published``'s result."""
    rows = pub.all_published()
    if selection == "all":
        return rows.reset_index(drop=True)
    if selection == "card":
        linked = {k for r in runs for k in pub.published_keys(r.model)}
        keep = (rows["params_b"] <= SMALL_PARAMS_B) | rows["key"].isin(linked)
        return rows[keep].reset_index(drop=True)
    return rows[rows["key"].isin(selection)].reset_index(drop=True)


def describe_selection(selection: str | list[str]) -> str:
    if selection == "all":
        return "all rows of both cards (--published all)"
    if selection == "card":
        return (f"the cards' 2B-class rows (≤ {SMALL_PARAMS_B:g}B parameters) plus the rows of every model with a "
                "measured run (default; --published all shows every row, --published NAME,... picks rows)")
    return f"rows named with --published ({len(selection)})"


def run_params(run) -> tuple[float, str]:
    """(parameters in billions, where the number comes from) of a measured run; NaN when unknown.

    run.json ``params_b`` (a ``vlmeval:`` run counts its wrapper's modules) wins; else the nominal size of the
    model from the card rows publishing it."""
    value = run.meta.get("params_b")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value), str(run.meta.get("params_source") or RUN_JSON)
    rows = pub.all_published().set_index("key")
    for key in pub.published_keys(run.model):
        if key in rows.index and not math.isnan(rows.loc[key, "params_b"]):
            note = " (demo weights are tiny)" if run.demo else ""
            return (float(rows.loc[key, "params_b"]),
                    f"nominal: {rows.loc[key, 'label']} ({rows.loc[key, 'params_source']}){note}")
    return math.nan, "unknown"


# ----------------------------------------------------------------------------------------------- ranks
def rank_of(value: float, shown: pd.DataFrame, column: str) -> tuple[int, int] | None:
    """(rank, out of) of ``value`` placed among the shown published rows with a ``column`` value: out of = those
    rows + 1 (the run); 1 = best, ties share the better rank, a model on both cards counts once (its first shown
    value). None when the run or every published row lacks the number."""
    if value is None or math.isnan(value):
        return None
    shown_keys = set(shown["key"])
    seen: dict[str, float] = {}
    for key, same, v in zip(shown["key"], shown["same_as"], shown[column]):
        ident = same if same and same in shown_keys else key
        if not math.isnan(v) and ident not in seen:
            seen[ident] = float(v)
    if not seen:
        return None
    return 1 + sum(v > value for v in seen.values()), len(seen) + 1


def ranks(shown: pd.DataFrame, runs: list) -> pd.DataFrame:
    """One row per measured run: run_name, display, then per PAPER_COLUMNS column the text 'k/N' ('' = no rank)."""
    rows = []
    for r in runs:
        row = {"run_name": r.run_name, "display": r.display}
        for c in PAPER_COLUMNS:
            rk = rank_of(float(r.scores[c]), shown, c)
            row[c] = f"{rk[0]}/{rk[1]}" if rk else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=["run_name", "display", *PAPER_COLUMNS])


# ----------------------------------------------------------------------------------------------- charts
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _points(shown: pd.DataFrame, column: str) -> list[tuple[float, float, str]]:
    """(params, score, label) of the shown rows with both; a model on both cards with the same point plotted once."""
    keys = set(shown["key"])
    seen: set[tuple[str, float, float]] = set()
    out = []
    for key, same, x, y, label in zip(shown["key"], shown["same_as"], shown["params_b"], shown[column], shown["label"]):
        ident = (same if same and same in keys else key, x, y)
        if math.isnan(x) or math.isnan(y) or ident in seen:
            continue
        seen.add(ident)
        out.append((float(x), float(y), label))
    return out


def _on_left(fraction: float) -> bool:
    """Labels of points in the right quarter of the axis run leftwards (else they leave the figure)."""
    return fraction > 0.75


def _label_rows(labels: list[tuple[float, float, str]], x_span: tuple[float, float],
                y_span: tuple[float, float]) -> list[int]:
    """Per (x, y, text) label, how many text lines to move it down so that it overlaps no earlier label (greedy;
    a label runs right from its point, about 0.0068 of the axis width per character at 7 pt)."""
    lx0, lx1 = math.log10(x_span[0]), math.log10(x_span[1])
    height = (y_span[1] - y_span[0]) or 1.0
    placed: list[tuple[float, float, float]] = []   # (left, right, y) in axis fractions
    rows = []
    for x, y, text in labels:
        at = (math.log10(x) - lx0) / ((lx1 - lx0) or 1.0)
        width = 0.0068 * len(text) + 0.01
        left, right = (at - width, at) if _on_left(at) else (at, at + width)
        ny = (y - y_span[0]) / height
        k = 0
        while any(left < hi and lo < right and abs(ny - 0.036 * k - py) < 0.03 for lo, hi, py in placed):
            k += 1
        placed.append((left, right, ny - 0.036 * k))
        rows.append(k)
    return rows


def _params_text(billions: float) -> str:
    for scale, unit in ((1.0, "B"), (1e-3, "M"), (1e-6, "K")):
        if billions >= scale:
            return f"{billions / scale:g}{unit}"
    return f"{billions * 1e9:g}"


def chart(path: Path, column: str, shown: pd.DataFrame, runs: list, title: str) -> None:
    """One 'parameters vs score' scatter: published rows labelled, measured runs highlighted, log-scale params."""
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    have = shown[~shown[column].isna()]
    unsized = have[have["params_b"].isna()]
    note = ""
    if len(unsized):
        names = ", ".join(f"{n} {v:g}" for n, v in zip(unsized["label"], unsized[column]))
        note = "\n".join(textwrap.wrap(f"not plotted (size unknown): {names}", 190))
    fig = Figure(figsize=(9.5, 5.6), dpi=90)  # fixed margins: constrained layout triples the time of 16 charts
    fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.12 + 0.025 * note.count("\n") + (0.03 if note else 0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = _points(shown, column)
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=30, color="#4c72b0", zorder=3, label="published")
    measured, lines = [], []
    for r in runs:
        y = float(r.scores[column])
        if math.isnan(y):
            continue
        x, _ = run_params(r)
        name = f"{r.label} [{r.run_name}]" + (" (demo)" if r.demo else "")
        (lines if math.isnan(x) else measured).append((x, y, name))
    for _x, y, name in lines:
        ax.axhline(y, color=_RUN_COLOUR, linestyle="--", linewidth=1, zorder=2, label=f"{name}: size unknown")
    for x, y, name in measured:
        ax.scatter([x], [y], marker="*", s=180, color=_RUN_COLOUR, edgecolor="black", linewidth=0.5, zorder=4,
                   label=f"{name} (measured)")
    xs = [p[0] for p in points] + [m[0] for m in measured]
    ys = [p[1] for p in points] + [m[1] for m in measured] + [ln[1] for ln in lines]
    lo, hi = (min(xs) / 1.6, max(xs) * 2.6) if xs else (0.5, 100.0)
    y_span = (min(ys), max(ys)) if ys else (0.0, 1.0)
    labels = [(x, y, text, False) for x, y, text in points] + [(x, y, text, True) for x, y, text in measured]
    for (x, y, text, run), k in zip(labels, _label_rows([(x, y, t) for x, y, t, _ in labels], (lo, hi), y_span)):
        leader = {"arrowprops": {"arrowstyle": "-", "lw": 0.4, "color": "#999999"}} if k else {}  # moved: line to point
        left = _on_left((math.log10(x) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))
        ax.annotate(text, (x, y), xytext=(-5 if left else 5, 2 - 10 * k), textcoords="offset points", fontsize=7,
                    va="center", ha="right" if left else "left", color=_RUN_COLOUR if run else "#333333",
                    fontweight="bold" if run else "normal", **leader)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256) if lo <= t <= hi]
    if hi / lo > 2000:   # a measured run far below the cards' sizes (a small wrapper): decades
        ticks = [10.0 ** k for k in range(-9, 4) if lo <= 10.0 ** k <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([_params_text(t) for t in ticks]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("parameters (billions, log scale)")
    ax.set_ylabel(f"{column} (paper units)")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10, color="#9c0006" if title.startswith("DEMO") else "black")
    if note:
        fig.text(0.01, 0.01, note, fontsize=6, color="#555555", va="bottom")
    ax.legend(loc="best", fontsize=7, frameon=False)
    fig.savefig(path)


# ----------------------------------------------------------------------------------------------- the section
@dataclass
class Landscape:
    selection: str | list[str]
    shown: pd.DataFrame          # published rows shown (pub.LANDSCAPE_COLUMNS + PAPER_COLUMNS)
    table: pd.DataFrame          # label, source, params_b, params_source, demo, *PAPER_COLUMNS (published + runs)
    ranks: pd.DataFrame          # see ranks()
    charts: dict[str, Path]      # column -> PNG


def collect_landscape(data, out_dir: Path, published: str | list[str] | None = None) -> Landscape:
    """The section's tables, and its charts written to ``out_dir`` (``landscape_{column}.png``)."""
    selection = published if isinstance(published, list) or published in SELECTIONS else parse_published(published)
    runs = data.runs
    shown = select_published(selection, runs)
    rows = [{"label": r["label"], "source": r["source"], "params_b": r["params_b"],
             "params_source": r["params_source"], "demo": False, **{c: r[c] for c in PAPER_COLUMNS}}
            for _, r in shown.iterrows()]
    for r in runs:
        params, source = run_params(r)
        rows.append({"label": r.display, "source": f"measured: {r.run_name}", "params_b": params,
                     "params_source": source, "demo": r.demo, **r.scores.to_dict()})
    table = pd.DataFrame(rows, columns=["label", "source", "params_b", "params_source", "demo", *PAPER_COLUMNS])
    charts: dict[str, Path] = {}
    demo = any(r.demo for r in runs)
    for c in PAPER_COLUMNS:
        if shown[c].isna().all() and all(math.isnan(float(r.scores[c])) for r in runs):
            continue
        path = Path(out_dir) / f"landscape_{_safe(c)}.png"
        note = f" ({pub.SPLIT_NOTES[c].split(';')[0]})" if c in pub.SPLIT_NOTES else ""
        title = f"{c}: parameters vs score{note}"
        chart(path, c, shown, runs, ("DEMO: random tiny model — " if demo else "") + title)
        charts[c] = path
    return Landscape(selection, shown, table, ranks(shown, runs), charts)


def tables(land: Landscape) -> tuple[Table, Table, Table]:
    """The section's three tables: published rows + runs, the runs' ranks, where the parameter counts come from."""
    cols = list(PAPER_COLUMNS)
    titles = [column_title(c) for c in cols]
    table = Table(SECTION_TITLE, ["Model", "Source", "Params (B)", *titles],
                  [[text_cell(r["label"]), text_cell(r["source"]), number_cell(r["params_b"]),
                    *[value_cell(c, r[c]) for c in cols]] for _, r in land.table.iterrows()],
                  [f"Published rows: {describe_selection(land.selection)}; {len(land.shown)} of "
                   f"{len(pub.all_published())} shown.",
                   "Sources: " + " | ".join(f"{c.title} = {c.origin}" for c in pub.CARDS) + ".",
                   "The Mini-InternVL card's columns are test splits (MMMU val, MathVista testmini) and its "
                   "OpenCompass average is not shown. " + split_note()],
                  filter_id="landscape", filter_placeholder="filter models (name, source)")
    rank_block = Table("Rank among the published rows shown", ["Run", *titles],
                       [[text_cell(r["display"]), *[text_cell(r[c]) for c in cols]] for _, r in land.ranks.iterrows()],
                       ["k/N = the run's place k when it is put among the shown published rows with a number for "
                        "that benchmark (N = those rows + the run; 1 = best, a tie takes the better place; a model on "
                        "both cards counts once). Published DocVQA/InfoVQA/"
                        "MMBench numbers are test splits, the harness scores val/dev: ranks there are indicative."],
                       level=3)
    params = Table("Parameter counts: where they come from", ["Model", "Params (B)", "Source of the count"],
                   [[text_cell(r["label"]), number_cell(r["params_b"]), text_cell(r["params_source"])]
                    for _, r in land.table.iterrows()],
                   ["Rows without a count are not plotted; a measured run of unknown size is a dashed line."], level=3)
    return table, rank_block, params


def section(ctx: ReportContext) -> Section:
    """Writes the landscape charts next to the report (``ctx.paths.landscape_charts``); the section shows the tables
    and the charts (before "Breakdowns"), the workbook gets the sheets ``landscape`` and ``landscape charts``."""
    land = collect_landscape(ctx.data, ctx.paths.out_dir, ctx.published)
    ctx.paths.landscape_charts = list(land.charts.values())
    table, rank_block, params = tables(land)
    page = [table, rank_block, Heading("Parameters vs score", 3),
            Only("md", [Note("One chart per benchmark: published rows as labelled points, measured runs as red stars, "
                             "log-scale parameters.")]),
            *[Image(p, f"{c}: parameters vs score") for c, p in land.charts.items()], params]
    anchors = [(f"{'A' if k % 2 == 0 else 'M'}{1 + (k // 2) * 26}", p) for k, p in enumerate(land.charts.values())]
    return Section(page, [Sheet(SHEET, [table, rank_block, params]), Sheet(CHART_SHEET, images=anchors)])
