"""The report's core sections: title, paper table, deltas, reproduction gaps, breakdowns, per-sample diff and runs.

Each is a function ``(ReportContext) -> Section`` (see ``build.SECTIONS``) over the tables ``collect.py`` built: the
page blocks of report.md / report.html and the workbook sheet of the same name (``SHEET_NAMES``). Names and labels
of models are read from the model registry when a section is built, never frozen at import.
"""
from __future__ import annotations

import html
from datetime import datetime, timezone

from minimonkey_eval.datasets.registry import PAPER_COLUMNS, RIGHT_THRESHOLD, PaperUnit, get_benchmark
from minimonkey_eval.eval.report import published as pub
from minimonkey_eval.eval.report.collect import (
    DEMO_BANNER,
    DEMO_TAG,
    ReportContext,
    ReportData,
    Run,
    pair_labels,
    sample_diff_columns,
)
from minimonkey_eval.eval.report.render import (
    Banner,
    Empty,
    Heading,
    Note,
    Only,
    Raw,
    Section,
    Sheet,
    Table,
    column_title,
    delta_cell,
    number_cell,
    split_note,
    text_cell,
    value_cell,
)
from minimonkey_eval.models.registry import MODELS, PAIR_NEW, get_model

MD_DIFF_ROWS = 10     # per-sample diff rows per dataset in report.md (all in report.xlsx)
HTML_DIFF_ROWS = 500  # per-sample diff rows in report.html


def report_title() -> str:
    return f"{get_model(PAIR_NEW).label} reproduction report"


def banner(data: ReportData) -> str | None:
    """The demo warning of a sheet (None: no demo run)."""
    return DEMO_BANNER if data.has_demo else None


def pair_text(pair: tuple[Run | None, Run | None]) -> str:
    new, base = pair
    new_label, base_label = pair_labels()
    return (f"{new_label} = {new.display if new else 'no MSAC-on/SCM-off run'}, "
            f"{base_label} = {base.display if base else 'no MSAC-off run'}")


def units_note() -> str:
    """'Units as in the <model> paper: MME = ..., OCRBench = 0-1000, all others percent (0-100). ...'."""
    other = [f"{b.column} = {b.paper_unit.description}" for b in map(get_benchmark, PAPER_COLUMNS)
             if b.paper_unit is not PaperUnit.PERCENT]
    return (f"Units as in the {get_model(PAIR_NEW).label} paper: " + ", ".join(other)
            + f", all others {PaperUnit.PERCENT.description}. Empty = not run / not published.")


# ----------------------------------------------------------------------------------------------- sections
def header(ctx: ReportContext) -> Section:
    data = ctx.data
    page = [Heading(report_title(), 1)]
    if data.has_demo:
        page.append(Banner(DEMO_BANNER))
    n = len(data.runs)
    page += [Only("md", [Note(f"{n} measured run(s) from `{ctx.work_dir}`. Also in this folder: `report.xlsx` "
                              "(every table, full per-sample diff), `report.html` (tables + charts).")]),
             Only("html", [Raw(html=f'<p class="note">{n} measured run(s) from '
                                    f'<code>{html.escape(str(ctx.work_dir))}</code>.</p>')])]
    return Section(page)


def paper_table(ctx: ReportContext) -> Section:
    cols = list(PAPER_COLUMNS)
    table = Table("Paper table", ["Model", "Source", *map(column_title, cols)],
                  [[text_cell(r["label"]), text_cell(r["source"]), *[value_cell(c, r[c]) for c in cols]]
                   for _, r in ctx.data.table.iterrows()], [units_note(), split_note()])
    return Section([table], [Sheet("table", [table], banner(ctx.data), freeze=True)])


def deltas(ctx: ReportContext) -> Section:
    data, cols = ctx.data, list(PAPER_COLUMNS)
    table = Table("Deltas", ["Comparison", "Runs (minuend − subtrahend)", *map(column_title, cols)],
                  [[text_cell(f"{r['comparison']} ({DEMO_TAG})" if r["demo"] else r["comparison"]),
                    text_cell(f"{r['minuend_run']} − {r['subtrahend_run']}" if r["minuend_run"]
                              else pub.MINIMONKEY_CARD.title),
                    *[delta_cell(c, r[c]) for c in cols]] for _, r in data.deltas.iterrows()],
                  ["Minuend − subtrahend per benchmark, paper units. Pair: " + pair_text(data.pair) + ".",
                   "MSAC on − off / SCM on − off compare runs of the same model (most recent of each)."])
    return Section([table], [Sheet("deltas", [table], banner(data), freeze=True)])


def gaps(ctx: ReportContext) -> Section:
    data, cols = ctx.data, list(PAPER_COLUMNS)
    rows = []
    g = data.gaps
    for run_name in dict.fromkeys(g["run_name"]):
        sub = g[g["run_name"] == run_name].set_index("benchmark")
        first = sub.iloc[0]
        rows.append([text_cell(first["display"]), text_cell(first["model"]), text_cell(bool(first["published_config"])),
                     *[delta_cell(c, sub.loc[c, "gap"], bool(sub.loc[c, "flagged"])) for c in cols]])
    if rows:
        rows.append([text_cell("flag when |gap| >"), text_cell(""), text_cell(""),
                     *[number_cell(data.tolerance[c]) for c in cols]])
    tol_text = ", ".join(f"{column_title(c)} {data.tolerance[c]:g}" for c in cols)
    base_label = pair_labels()[1]
    table = Table("Reproduction gaps (measured − published)", ["Run", "Model", "Published config",
                                                                *map(column_title, cols)], rows,
                  ["Measured − published for every run whose model has a published row; bold = |gap| above "
                   f"tolerance ({tol_text}).",
                   f"Published config = the run uses the setting the card reports ({published_settings()}); "
                   "other rows show ablation effects, not reproduction gaps.",
                   f"{base_label} published = {pub.MINIMONKEY_CARD.title}, MMMU/MMB from the "
                   f"{pub.MINI_INTERNVL_CARD.title}. " + split_note()])
    return Section([table], [Sheet("gaps", [table], banner(data), freeze=True)])


def breakdowns(ctx: ReportContext) -> Section:
    tables = [Table(d, ["Metric", *df.columns], [[text_cell(m), *[number_cell(v) for v in row]]
                                                 for m, row in df.iterrows()],
                    ["'headline' is the number in the paper table; other rows as the scorer reports."], level=3)
              for d, df in ctx.data.breakdowns.items()]
    page = [Heading("Breakdowns"), *(tables or [Empty("no sub-scores")])]
    return Section(page, [Sheet("breakdowns", tables, banner(ctx.data))])


def per_sample_diff(ctx: ReportContext) -> Section:
    sd, columns = ctx.data.sample_diff, list(sample_diff_columns())
    new_label, base_label = pair_labels()
    diff = Table(f"Per-sample diff: {new_label} vs {base_label}", columns,
                 [[text_cell(r[c]) if not c.endswith(" score") else number_cell(r[c]) for c in columns]
                  for _, r in sd.iterrows()],
                 [f"Samples one run gets right (score ≥ {RIGHT_THRESHOLD:g}) and the other wrong; a failed sample "
                  "without a score counts as wrong. Pair: " + pair_text(ctx.data.pair) + "."])
    counts_rows = []
    if not sd.empty:
        counts = sd.groupby("dataset", sort=False)["right"].value_counts().unstack(fill_value=0)
        counts = counts.reindex(columns=[new_label, base_label], fill_value=0)
        counts_rows = [[text_cell(d), number_cell(float(r[new_label])), number_cell(float(r[base_label]))]
                       for d, r in counts.iterrows()]
    counts = Table("Per-sample diff: counts", ["Dataset", f"only {new_label} right", f"only {base_label} right"],
                   counts_rows, heading=False)
    page = [Heading(diff.title), *map(Note, diff.notes)]
    if sd.empty:
        page.append(Empty())
    else:
        per_dataset = [Table(d, columns, [diff.rows[i] for i, ds in enumerate(sd["dataset"]) if ds == d], level=3,
                             md_rows=MD_DIFF_ROWS, clip=80) for d in dict.fromkeys(sd["dataset"])]
        page += [counts, Only("md", per_dataset),
                 Only("html", [Table(diff.title, columns, diff.rows, heading=False, html_rows=HTML_DIFF_ROWS)])]
    return Section(page, [Sheet("per-sample diff", [counts, diff], banner(ctx.data))])


def runs(ctx: ReportContext) -> Section:
    rows = []
    for r in ctx.data.runs:
        m = r.meta
        rows.append([text_cell(r.run_name), text_cell(f"{r.label} ({DEMO_TAG})" if r.demo else r.label),
                     text_cell(r.model), text_cell(r.msac), text_cell(r.scm), text_cell(m.get("tile_profile")),
                     text_cell(r.demo), text_cell(m.get("dtype")), text_cell(oom_fallbacks_text(m)),
                     text_cell(finished_text(r)), text_cell(len(m.get("datasets") or [])),
                     text_cell(str(m.get("checkpoint_sha256") or "")[:12]),
                     text_cell(str(m.get("git_commit") or "")[:10]), text_cell(m.get("model_path"))])
    table = Table("Runs", ["Run", "Label", "Model", "MSAC", "SCM", "Tile profile", "Demo", "Dtype",
                           "OOM 'A' fallbacks (failed, not reproduced)", "Finished", "Datasets", "Checkpoint sha256",
                           "Git commit", "Model path"], rows)
    return Section([table], [Sheet("runs", [table], banner(ctx.data))])


# ----------------------------------------------------------------------------------------------- cell texts
def published_settings() -> str:
    """'Mini-Monkey: MSAC on, SCM off; ...' for every registered model with card rows (from the model registry)."""
    on = {True: "on", False: "off"}
    return "; ".join(f"{s.label}: MSAC {on[s.published_msac]}, SCM {on[s.published_scm]}"
                     for s in MODELS.values() if s.published)


def finished_text(r: Run) -> str:
    t = r.meta.get("timings", {}).get("finished") if isinstance(r.meta.get("timings"), dict) else None
    if t not in (None, ""):
        return str(t)
    return datetime.fromtimestamp(r.finished, timezone.utc).strftime("%Y-%m-%d %H:%M UTC (run.json mtime)")


def oom_fallbacks_text(meta: dict) -> str:
    """The Runs sheet's cell from run.json: ``'3 (DocVQA_VAL 2, MMMU_DEV_VAL 1)'``, ``'0'``, or ``''`` when the run is
    not in the authors' setting (run.json records no count and no ``wrapper``)."""
    results = meta.get("results") if isinstance(meta, dict) else None
    counts = {d: r["oom_fallbacks"] for d, r in (results or {}).items()
              if isinstance(r, dict) and isinstance(r.get("oom_fallbacks"), int)}
    if not counts:
        return "0" if isinstance(meta, dict) and meta.get("wrapper") else ""
    total = sum(counts.values())
    parts = ", ".join(f"{d} {n}" for d, n in counts.items() if n)
    return f"{total} ({parts})" if parts else "0"
