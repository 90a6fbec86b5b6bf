"""The report's significance section: paired tests per compared pair, per-run CIs, forest plot, flip lists.

``section(ctx)`` computes, for every measured pair of the Deltas table (`compare.compare_runs`, on the samples both
runs share) and for every run (`significance.run_ci`), the statistics (once per report: ``statistics``, which the
mismatch section reads too); draws ``forest.png`` (Δ with its 95% CI per benchmark on the delta chart's 0-100 scale,
published Δ as a diamond, zero line); and returns the page blocks (sortable tables, flip lists with image thumbnails
in html) and the sheets ``significance`` and ``flips`` (flip images as paths).
"""
from __future__ import annotations

import base64
import html
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from minimonkey_eval.datasets.registry import PAPER_COLUMNS, RIGHT_THRESHOLD, get_benchmark, resampling
from minimonkey_eval.eval.report import published as pub
from minimonkey_eval.eval.report.collect import DEMO_BANNER, ReportContext
from minimonkey_eval.eval.report.render import (
    Bullets,
    Cell,
    Empty,
    Heading,
    Image,
    Note,
    Only,
    Raw,
    Section,
    Sheet,
    Table,
    normalised,
    scale_note,
)
from minimonkey_eval.eval.runfiles.layout import RunLayout
from minimonkey_eval.eval.stats import significance as sig
from minimonkey_eval.eval.stats.compare import Comparison, check_headline, compare_runs, fmt, result_row
from minimonkey_eval.eval.stats.units import UnitsError, load_units, rule_for

logger = logging.getLogger(__name__)

FOREST_NAME = "forest.png"
MD_ROWS = 10          # flip rows per benchmark shown in report.md (all of them in report.xlsx)
HTML_ROWS = 50        # flip rows per benchmark and pair shown (with thumbnails) in report.html
THUMB_PX = 96
METHOD_NOTES = (
    "Δ = A − B on the samples both runs share, in paper units. " + sig.METHOD_NOTE + " Holm-Bonferroni adjusts p "
    "across the benchmarks of one comparison; the verdict reads the adjusted p at 0.05, and a note says so where "
    "the verdict and the CI beside it disagree.",
    "MDE 80%: the true |Δ| this benchmark would detect with 80% power at its n and discordance (α = 0.05); a "
    "published Δ below it cannot be confirmed or refuted by this run ('—': the runs agree on every unit of a "
    "grouped metric, so there is no spread to size it from). Published Δ: the model cards' A − B, "
    "shown where both runs use their card's setting; 'inside CI' = the measured Δ is consistent with it.",
    "Resampling units: " + "; ".join(f"{c}: {resampling(c).description}" for c in PAPER_COLUMNS) + ".",
)


@dataclass
class RunCIRow:
    run: str
    display: str
    dataset: str
    unit: str
    ci: sig.RunCI | None
    status: str              # published-vs-CI status, or why there is no CI


@dataclass
class SignificanceData:
    comparisons: list[tuple[str, Comparison]]          # (comparison title, result)
    run_cis: list[RunCIRow]
    demo: bool
    forest: Path | None = None
    thumbs: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- collect
def collect(data) -> SignificanceData:
    by_name = {r.run_name: r for r in data.runs}
    comparisons = []
    for _, row in data.deltas.iterrows():
        a, b = by_name.get(row["minuend_run"]), by_name.get(row["subtrahend_run"])
        if a is None or b is None:
            continue
        comparisons.append((str(row["comparison"]), compare_runs(a, b, intersect=True, strict=False)))
    return SignificanceData(comparisons, run_cis(data.runs), data.has_demo)


def run_cis(runs) -> list[RunCIRow]:
    """The 95% CI of every headline of every run that has its per-sample file (the trackers log these too)."""
    cis = []
    for r in runs:
        ref = pub.published_reference(r.model)
        in_config = pub.published_config(r.model) == (r.msac, r.scm)
        for b in PAPER_COLUMNS:
            d = get_benchmark(b).vlmeval_name
            if not RunLayout(r.path).samples_csv(d).exists():
                continue
            published = float(ref[0][b]) if ref is not None and in_config else math.nan
            try:
                units = load_units(r.path, d, r.model)
                check_headline(units, r)
                ci = sig.run_ci(units, published=published)
                status = ci.published_status if in_config else "not the published setting"
                cis.append(RunCIRow(r.run_name, r.display, d, str(units.rule.unit), ci, status))
            except UnitsError as exc:
                cis.append(RunCIRow(r.run_name, r.display, d, str(rule_for(d).unit), None, f"no CI: {exc}"))
    return cis


# ----------------------------------------------------------------------------------------------- forest plot
def _norm(dataset: str, v: float) -> float:
    return normalised(get_benchmark(dataset).column, v)


def draw_forest(path: Path, sd: SignificanceData) -> Path | None:
    """One panel per comparison: Δ (dot) with its 95% CI (bar) per benchmark, published Δ (diamond), zero line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    panels = [(t, c) for t, c in sd.comparisons if c.results]
    if not panels:
        return None
    cols = list(PAPER_COLUMNS)
    fig = Figure(figsize=(6.5 * len(panels) + 1.5, 7.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    colour = {sig.BETTER: "#31a354", sig.WORSE: "#de2d26", sig.SAME: "#636363"}
    for ax, (title, c) in zip(axes, panels):
        res = {get_benchmark(r.dataset).column: r for r in c.results}
        for y, col in enumerate(cols):
            r = res.get(col)
            if r is None:
                ax.text(0, y, "not compared", ha="center", va="center", fontsize=7, color="#999999")
                continue
            lo, hi, mid = _norm(r.dataset, r.lo), _norm(r.dataset, r.hi), _norm(r.dataset, r.delta)
            if math.isnan(lo):
                ax.text(mid, y - 0.3, "no CI (too few units)", ha="center", va="bottom", fontsize=7, color="#777777")
            ax.plot([lo, hi], [y, y], color=colour[r.verdict], linewidth=2.2, solid_capstyle="butt", zorder=2)
            ax.plot([lo, lo], [y - 0.18, y + 0.18], color=colour[r.verdict], linewidth=1.2, zorder=2)
            ax.plot([hi, hi], [y - 0.18, y + 0.18], color=colour[r.verdict], linewidth=1.2, zorder=2)
            ax.plot([mid], [y], "o", color=colour[r.verdict], markersize=6, zorder=3)
            if not math.isnan(r.published_delta):
                ax.plot([_norm(r.dataset, r.published_delta)], [y], "D", color="black", markersize=5, zorder=4)
        ax.axvline(0, color="black", linewidth=0.9, zorder=1)
        ax.set_title(f"{title}\nA = {c.a.run_name}, B = {c.b.run_name}", fontsize=10)
        ax.set_xlabel(f"Δ A − B ({scale_note()})", fontsize=9)
        ax.grid(axis="x", alpha=0.3, zorder=0)
        lims = [v for r in c.results for v in (_norm(r.dataset, r.lo), _norm(r.dataset, r.hi),
                                               _norm(r.dataset, r.published_delta)) if not math.isnan(v)]
        span = max([abs(v) for v in lims] + [1.0])
        ax.set_xlim(-1.15 * span, 1.15 * span)
    axes[0].set_yticks(range(len(cols)))
    divisors = {c: get_benchmark(c).chart_divisor for c in cols}
    axes[0].set_yticklabels([f"{c} (÷{divisors[c]:g})" if divisors[c] != 1 else c for c in cols])
    axes[0].set_ylim(len(cols) - 0.5, -0.5)
    handles = [Line2D([], [], color=colour[sig.BETTER], marker="o", label="better (Holm p < 0.05)"),
               Line2D([], [], color=colour[sig.WORSE], marker="o", label="worse (Holm p < 0.05)"),
               Line2D([], [], color=colour[sig.SAME], marker="o", label="not distinguishable"),
               Line2D([], [], color="black", marker="D", linestyle="", label="published Δ")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, frameon=False, fontsize=9)
    title = "Measured Δ with its 95% CI per benchmark"
    if sd.demo:
        title = f"DEMO: random tiny model — {title}"
    fig.suptitle(title, fontsize=12, color="#9c0006" if sd.demo else "black")
    fig.savefig(path)
    return path


# ----------------------------------------------------------------------------------------------- tables
TABLE_HEADERS = ("Benchmark", "unit", "n", "A", "B", "Δ A−B", "95% CI", "test", "p", "p Holm", "MDE 80%",
                 "verdict", "published Δ", "published Δ vs CI")
CI_HEADERS = ("Run", "Benchmark", "unit", "n", "headline", "95% CI", "published", "published vs CI")
FLIP_HEADERS = ("Benchmark", "index", "right", "question", "reference", "prediction A", "score A", "prediction B",
                "score B", "image")


def pair_rows(c: Comparison) -> list[list[str]]:
    rows = []
    for r in c.results:
        cells = result_row(r)
        rows.append([cells["Benchmark"], c.units.get(r.dataset, ""), cells["n"], cells["A"], cells["B"],
                     cells["Δ A−B"], cells["95% CI"], cells["test"], cells["p"], cells["p Holm"], cells["MDE 80%"],
                     cells["verdict"], cells["published Δ"], cells["published Δ vs CI"]])
    return rows


def ci_rows(sd: SignificanceData) -> list[list[str]]:
    rows = []
    for row in sd.run_cis:
        bench = get_benchmark(row.dataset)
        col, d = bench.column, bench.stat_decimals
        if row.ci is None:
            rows.append([row.display, col, row.unit, "", "", "", "", row.status])
            continue
        ci = row.ci
        rows.append([row.display, col, row.unit, str(ci.n), fmt(ci.headline, d), f"[{fmt(ci.lo, d)}, {fmt(ci.hi, d)}]",
                     fmt(ci.published, d), row.status])
    return rows


def flip_rows(c: Comparison) -> list[list]:
    return [[get_benchmark(f["dataset"]).column, f["index"], "A" if f["right"] == "A" else "B", f["question"],
             f["answer"], f["prediction A"], f["score A"], f["prediction B"], f["score B"], f["image_path"]]
            for _, f in c.flips.iterrows()]


def _no_flips(c: Comparison) -> str:
    return "none: the runs agree on every sample they share" if c.results else "no benchmark compared"


# ----------------------------------------------------------------------------------------------- the section
_STYLE = """<style>
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";color:#999}
td.thumb img{max-width:96px;max-height:96px;border:1px solid #ccc;margin:0}
td.better{background:#c6efce}td.worse{background:#ffc7ce}
</style>"""
_SORT_JS = """<script>
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("th").forEach(function(th,i){th.addEventListener("click",function(){
    var b=t.tBodies[0],rows=Array.from(b.rows),asc=th.dataset.asc!=="1";th.dataset.asc=asc?"1":"0";
    var key=function(r){var c=r.cells[i],v=(c.dataset.sort!==undefined?c.dataset.sort:c.textContent).trim();
      var n=parseFloat(v.replace(/^[\\[+]/,""));return isNaN(n)?v.toLowerCase():n;};
    rows.sort(function(x,y){var a=key(x),c=key(y);if(typeof a!==typeof c){a=String(a);c=String(c);}
      return (a<c?-1:a>c?1:0)*(asc?1:-1);});rows.forEach(function(r){b.appendChild(r);});});});});
</script>"""


def thumbnail(path: str) -> str | None:
    """A small JPEG of the sample's (first) image as a data URI, or None when it cannot be read."""
    from PIL import Image

    first = str(path).split(";")[0].strip()
    if not first:
        return None
    try:
        with Image.open(first) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=70)
    except (OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pair_table(title: str, c: Comparison) -> list:
    rows = pair_rows(c)
    if not rows:
        return [Only("md", [Empty()]), Only("html", [Empty("no benchmark compared")])]
    verdict_col = TABLE_HEADERS.index("verdict")
    css = {(i, verdict_col): {sig.BETTER: "better", sig.WORSE: "worse"}.get(r[verdict_col], "")
           for i, r in enumerate(rows)}
    return [Table.of(title, TABLE_HEADERS, rows, css=css, heading=False, sortable=True)]


def _comparison_notes(c: Comparison) -> list[str]:
    return [*c.notes, *[f"{get_benchmark(r.dataset).column}: {r.note}" for r in c.results if r.note],
            *[f"not compared: {get_benchmark(d).column}: {why}" for d, why in c.skipped.items()]]


def _flip_blocks(title: str, c: Comparison, thumbs: dict[str, str | None]) -> list:
    """One comparison's flip list: md per benchmark (counts line, MD_ROWS rows), html one sortable table with
    thumbnails (HTML_ROWS rows per benchmark)."""
    rows = flip_rows(c)
    out: list = [Heading(f"{title}: {len(rows)} flip(s)", 3)]
    if not rows:
        return out + [Empty(_no_flips(c))]
    md, shown = [], []
    for bench in dict.fromkeys(r[0] for r in rows):
        sub = [r for r in rows if r[0] == bench]
        a = sum(r[2] == "A" for r in sub)
        md += [Note(f"**{bench}**: {a} only A right, {len(sub) - a} only B right"),
               Table.of("", FLIP_HEADERS, [[*r[:6], fmt(r[6]), r[7], fmt(r[8]), r[9]] for r in sub[:MD_ROWS]],
                        heading=False, clip=80)]
        if len(sub) > MD_ROWS:
            md.append(Note(f"_… {len(sub) - MD_ROWS} more in report.xlsx._"))
        shown += sub[:HTML_ROWS]
    cells = []
    for r in shown:
        uri = thumbs[r[9]] if r[9] in thumbs else thumbs.setdefault(r[9], thumbnail(r[9]))
        img = Cell(r[9], r[9], html=f'<img alt="{html.escape(r[9])}" title="{html.escape(r[9])}" src="{uri}">'
                   if uri else None, css="thumb")
        cells.append([*r[:6], fmt(r[6]), r[7], fmt(r[8]), img])
    page: list = [Table.of("", FLIP_HEADERS, cells, heading=False, sortable=True)]
    if len(shown) < len(rows):
        page.append(Note(f"… {len(rows) - len(shown)} more flips in report.xlsx (sheet flips)."))
    return out + [Only("md", md), Only("html", page)]


def statistics(ctx: ReportContext) -> SignificanceData:
    """The section's statistics, computed once per report (``ctx.once``): the mismatch section reads the run CIs."""
    return collect(ctx.data)


def section(ctx: ReportContext) -> Section:
    """Draws forest.png (or removes a stale one); the section's blocks and the sheets ``significance`` and ``flips``."""
    sd = ctx.once(statistics)
    forest = ctx.paths.out_dir / FOREST_NAME
    sd.forest = draw_forest(forest, sd)
    if sd.forest is None:
        forest.unlink(missing_ok=True)   # no stale plot from an earlier report
    page: list = [Raw(html=_STYLE), Heading("Is the difference real? Paired significance"), *map(Note, METHOD_NOTES)]
    if not sd.comparisons:
        page.append(Empty("no measured pair of runs to compare"))
    for title, c in sd.comparisons:
        page += [Heading(title, 3), Note(f"A = {c.a.display}; B = {c.b.display}."), *_pair_table(title, c),
                 Bullets(_comparison_notes(c))]
    if sd.forest is not None:
        page.append(Image(sd.forest, "Δ with 95% CI per benchmark"))
    ci_table = Table.of("95% confidence intervals per run", CI_HEADERS, ci_rows(sd))
    page += [Heading(ci_table.title, 3),
             Only("md", [Note("Percentile bootstrap of each run's headline over its units; published = the model "
                              "card's number, for runs in the card's setting.")]),
             Table.of("", CI_HEADERS, ci_table.rows, heading=False, sortable=True),
             Heading("Flip lists"),
             Only("md", [Note(f"Per compared pair and benchmark: the samples one run gets right (score ≥ "
                              f"{RIGHT_THRESHOLD:g}) and the other wrong; circular MCQ rows are their group (all "
                              "rotations). Full lists in report.xlsx (sheet flips), with thumbnails in report.html.")]),
             Only("html", [Note(f"Samples one run gets right (score ≥ {RIGHT_THRESHOLD:g}) and the other wrong; "
                                "click a column header to sort. Circular MCQ rows stand for their group (all "
                                "rotations).")])]
    for title, c in sd.comparisons:
        page += _flip_blocks(title, c, sd.thumbs)
    page.append(Raw(html=_SORT_JS))
    pairs = [Table.of(title, TABLE_HEADERS, pair_rows(c), [f"A = {c.a.display}; B = {c.b.display}", *METHOD_NOTES,
                                                           *_comparison_notes(c)])
             for title, c in sd.comparisons]
    flips = [[title, *r] for title, c in sd.comparisons for r in flip_rows(c)]
    sheets = [Sheet("significance", [*pairs, ci_table], DEMO_BANNER if sd.demo else None),
              Sheet("flips", [Table.of("Flip lists", ["comparison", *FLIP_HEADERS[:-1], "image_path"], flips)],
                    table_only=True)]
    return Section(page, sheets)
