"""The report's "Charts" section: measured vs published scores per benchmark, and the compared pair's delta (PNG).

Every benchmark is drawn on one 0-100 scale: a headline is divided by its registry ``Benchmark.chart_divisor``
(MME ÷ 28, OCRBench ÷ 10: ``render.normalised``), as the axis labels say (``render.scale_note``).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from minimonkey_eval.datasets.registry import PAPER_COLUMNS, get_benchmark
from minimonkey_eval.eval.report import published as pub
from minimonkey_eval.eval.report.collect import DEMO_TAG, ReportContext, ReportData, pair_labels
from minimonkey_eval.eval.report.render import Heading, Image, Section, column_title, normalised, scale_note
from minimonkey_eval.models.registry import PAIR_BASE, PAIR_NEW

logger = logging.getLogger(__name__)


def section(ctx: ReportContext) -> Section:
    """Draws scores.png and delta.png; the section shows both."""
    paths = ctx.paths
    draw_scores(paths.scores_chart, ctx.data)
    draw_delta(paths.delta_chart, ctx.data)
    new_label, base_label = pair_labels()
    return Section([Heading("Charts"), Image(paths.scores_chart, "Scores, measured vs published"),
                    Image(paths.delta_chart, f"{new_label} − {base_label} per benchmark")])


def tick(column: str) -> str:
    """Axis label of a benchmark: its title, with its divisor when it is not on 0-100 already."""
    divisor = get_benchmark(column).chart_divisor
    return column_title(column) + (f" (÷{divisor:g})" if divisor != 1 else "")


# ----------------------------------------------------------------------------------------------- charts
def draw_scores(path: Path, data: ReportData) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = list(PAPER_COLUMNS)
    new, base = data.pair
    new_label, base_label = pair_labels()
    series = []  # (label, values, colour, hatch)
    for model, name, run, colours in ((PAIR_BASE, base_label, base, ("#9ecae1", "#2171b5")),
                                      (PAIR_NEW, new_label, new, ("#fdbe85", "#d94701"))):
        ref = pub.published_reference(model)
        pv = ref[0] if ref else pd.Series(math.nan, index=cols)
        series.append((f"{name} published", [normalised(c, pv[c]) for c in cols], colours[0], "//"))
        if run is not None:
            tag = f" ({DEMO_TAG})" if run.demo else ""
            series.append((f"{name} measured [{run.run_name}]{tag}", [normalised(c, run.scores[c]) for c in cols],
                           colours[1], ""))
        else:
            series.append((f"{name} measured: no run", [math.nan] * len(cols), colours[1], ""))
    demo = any(r is not None and r.demo for r in data.pair)

    fig = Figure(figsize=(16, 6.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    n = len(series)
    width = 0.8 / n
    for k, (label, vals, colour, hatch) in enumerate(series):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(cols))]
        ax.bar(xs, [0 if math.isnan(v) else v for v in vals], width, label=label, color=colour,
               hatch=hatch, edgecolor="white" if not hatch else "#555555", linewidth=0.4)
        for x, v in zip(xs, vals):
            if math.isnan(v):  # make "missing" visibly different from a zero bar
                ax.text(x, 1.5, "not run" if "measured" in label else "not publ.", rotation=90, ha="center",
                        va="bottom", fontsize=7, color="#777777")
            elif v == 0:  # a measured zero has no visible bar: say it
                ax.text(x, 0.5, "0", ha="center", va="bottom", fontsize=8, color=colour, fontweight="bold")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([tick(c) for c in cols], rotation=35, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(cols) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"score ({scale_note()})")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    title = f"{new_label} vs {base_label}: measured vs published per benchmark"
    if demo:
        title = f"DEMO: random tiny model — {title}"
    ax.set_title(title, fontsize=13, pad=34, color="#9c0006" if demo else "black")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=n, frameon=False, fontsize=9)
    fig.savefig(path)


def draw_delta(path: Path, data: ReportData) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cols = list(PAPER_COLUMNS)
    measured = data.deltas[data.deltas["comparison"].str.endswith("(measured)")]
    published = data.deltas[data.deltas["comparison"].str.endswith("(published)")]
    mv = [normalised(c, measured.iloc[0][c]) if not measured.empty else math.nan for c in cols]
    pv = [normalised(c, published.iloc[0][c]) if not published.empty else math.nan for c in cols]
    new, base = data.pair
    new_label, base_label = pair_labels()
    demo = any(r is not None and r.demo for r in data.pair)

    fig = Figure(figsize=(16, 6.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = range(len(cols))
    colours = ["#31a354" if v > 0 else "#de2d26" if v < 0 else "#969696" for v in mv]
    ax.bar(xs, [0 if math.isnan(v) else v for v in mv], 0.55, color=colours, zorder=2)
    for x, v in zip(xs, mv):
        if v == 0:  # a zero delta has no bar height: draw it as a dash on the zero line
            ax.plot([x - 0.275, x + 0.275], [0, 0], color="#969696", linewidth=4, zorder=2.5,
                    solid_capstyle="butt")
    finite = [v for v in mv + pv if not math.isnan(v)]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    rng = max(hi - lo, 1.0)
    pad = 0.04 * rng  # keeps value labels clear of the published-delta diamonds
    for x, v, p in zip(xs, mv, pv):
        if math.isnan(v):  # on the side of the zero line away from the published diamond
            below = math.isnan(p) or p >= 0
            ax.text(x, -pad if below else pad, "no data", ha="center", va="top" if below else "bottom",
                    fontsize=8, color="#777777")
        elif v >= 0:
            top = max(v, p) if not math.isnan(p) and p >= 0 else v
            ax.text(x, top + pad, f"{v:+.1f}", ha="center", va="bottom", fontsize=8)
        else:
            bottom = min(v, p) if not math.isnan(p) and p < 0 else v
            ax.text(x, bottom - pad, f"{v:+.1f}", ha="center", va="top", fontsize=8)
    ax.scatter([x for x, v in zip(xs, pv) if not math.isnan(v)], [v for v in pv if not math.isnan(v)],
               marker="D", s=42, color="black", zorder=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylim(lo - 0.18 * rng if lo < 0 else -0.1 * rng, hi + 0.18 * rng)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([tick(c) for c in cols], rotation=35, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, len(cols) - 0.4)
    ax.set_ylabel(f"Δ {new_label} − {base_label}\n({scale_note()})")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    handles = [Line2D([], [], marker="D", color="black", linestyle="",
                      label=f"published Δ ({pub.MINIMONKEY_CARD.title})")]
    if new is not None and base is not None:
        mlabel = f"measured Δ: [{new.run_name}] − [{base.run_name}]" + (f" ({DEMO_TAG})" if demo else "")
        handles = [Patch(facecolor="#31a354", label=f"{mlabel}, positive"),
                   Patch(facecolor="#de2d26", label=f"{mlabel}, negative"),
                   Patch(facecolor="#969696", label="measured Δ = 0"), *handles]
    else:
        handles.append(Patch(facecolor="none", edgecolor="none", label="no measured pair: no bars"))
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              ncol=2 if len(handles) > 3 else len(handles), frameon=False, fontsize=9)
    title = f"{new_label} − {base_label} per benchmark (bars and numbers: measured; diamonds: published)"
    if demo:
        title = f"DEMO: random tiny model — {title}"
    ax.set_title(title, fontsize=13, pad=30 if len(handles) <= 3 else 46, color="#9c0006" if demo else "black")
    fig.savefig(path)
