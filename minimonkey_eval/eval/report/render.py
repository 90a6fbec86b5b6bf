"""Report, step 2 (render): ``ReportData`` -> blocks of cells -> markdown, xlsx and html text.

The same blocks feed every format, so the three always show the same numbers; sections added by other modules
(``report_landscape``, ``report_significance``, ``report_mismatch``) reuse ``Block``, ``_md_block``, ``_html_block``,
``write_block`` / ``add_sheet`` (xlsx) and ``insert_section`` (md / html), so every table of the report is drawn by
the same three functions.
"""
from __future__ import annotations

import base64
import html
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from minimonkey_eval.datasets.registry import PAPER_COLUMNS
from minimonkey_eval.eval.backends.authors_setting import oom_fallbacks_text
from minimonkey_eval.eval.report import published as pub
from minimonkey_eval.eval.report.collect import (
    _DIFF_DECIMALS,
    _VALUE_DECIMALS,
    COLUMN_TITLES,
    DEMO_BANNER,
    DEMO_TAG,
    PAIR_BASE_NAME,
    PAIR_NEW_NAME,
    RIGHT_THRESHOLD,
    SAMPLE_DIFF_COLUMNS,
    SHEET_NAMES,
    ReportData,
    ReportPaths,
    Run,
)
from minimonkey_eval.models.registry import MODELS

logger = logging.getLogger(__name__)
REPORT_TITLE = f"{PAIR_NEW_NAME} reproduction report"

# ----------------------------------------------------------------------------------------------- rendering model
@dataclass
class Cell:
    value: Any                 # raw value written to xlsx (None = empty cell)
    text: str                  # shown in md / html
    number_format: str | None = None
    tone: str = ""             # 'pos' | 'neg' | ''
    bold: bool = False
    numeric: bool = False
    html: str | None = None    # pre-rendered html (an image) shown instead of ``text`` in html; ``text`` sorts it
    css: str = ""              # extra html class of the cell (e.g. 'better', 'thumb')


@dataclass
class Block:
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _text(v: Any) -> Cell:
    if _isnan(v):
        return Cell(None, "")
    if isinstance(v, bool):
        return Cell("yes" if v else "no", "yes" if v else "no")
    return Cell(str(v), str(v))


def _value(col: str, v: float) -> Cell:
    d = _VALUE_DECIMALS.get(col, 1)
    if _isnan(v):
        return Cell(None, "", numeric=True)
    return Cell(float(v), f"{v:.{d}f}", "0" if d == 0 else "0." + "0" * d, numeric=True)


def _delta(col: str, v: float, flagged: bool = False) -> Cell:
    d = _DIFF_DECIMALS.get(col, 2)
    if _isnan(v):
        return Cell(None, "", numeric=True)
    z = "0" if d == 0 else "0." + "0" * d
    tone = "pos" if v > 0 else "neg" if v < 0 else ""
    text = f"{v:+.{d}f}" if round(v, d) != 0 else f"{0:.{d}f}"
    return Cell(float(v), text, f"+{z};-{z};{z}", tone=tone, bold=flagged, numeric=True)


def _plain_number(v: float) -> Cell:
    if _isnan(v):
        return Cell(None, "", numeric=True)
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return Cell(float(v), text, "0.0#" if text != f"{v:.0f}" else "0", numeric=True)


def _col_title(c: str) -> str:
    return COLUMN_TITLES.get(c, c)


def _blocks(data: ReportData) -> dict[str, list[Block]]:
    cols = list(PAPER_COLUMNS)
    titles = [_col_title(c) for c in cols]
    units = (f"Units as in the {PAIR_NEW_NAME} paper: MME = perception + reasoning sum (0-2800), "
             "OCRBench = 0-1000, all others percent (0-100). Empty = not run / not published.")
    split_note = "Split caveats: " + "; ".join(f"{_col_title(k)}: {v}" for k, v in pub.SPLIT_NOTES.items()) + "."

    table = Block("Paper table", ["Model", "Source", *titles],
                  [[_text(r["label"]), _text(r["source"]), *[_value(c, r[c]) for c in cols]]
                   for _, r in data.table.iterrows()], [units, split_note])

    deltas = Block("Deltas", ["Comparison", "Runs (minuend − subtrahend)", *titles],
                   [[_text(f"{r['comparison']} ({DEMO_TAG})" if r["demo"] else r["comparison"]),
                     _text(f"{r['minuend_run']} − {r['subtrahend_run']}" if r["minuend_run"]
                           else pub.MINIMONKEY_CARD.title),
                     *[_delta(c, r[c]) for c in cols]] for _, r in data.deltas.iterrows()],
                   ["Minuend − subtrahend per benchmark, paper units. Pair: " + _pair_text(data.pair) + ".",
                    "MSAC on − off / SCM on − off compare runs of the same model (most recent of each)."])

    gap_rows: list[list[Cell]] = []
    g = data.gaps
    for run_name in dict.fromkeys(g["run_name"]):
        sub = g[g["run_name"] == run_name].set_index("benchmark")
        first = sub.iloc[0]
        gap_rows.append([_text(first["display"]), _text(first["model"]), _text(bool(first["published_config"])),
                         *[_delta(c, sub.loc[c, "gap"], bool(sub.loc[c, "flagged"])) for c in cols]])
    if gap_rows:
        gap_rows.append([_text("flag when |gap| >"), _text(""), _text(""),
                         *[_plain_number(data.tolerance[c]) for c in cols]])
    tol_text = ", ".join(f"{_col_title(c)} {data.tolerance[c]:g}" for c in cols)
    gaps = Block("Reproduction gaps (measured − published)", ["Run", "Model", "Published config", *titles],
                 gap_rows,
                 ["Measured − published for every run whose model has a published row; bold = |gap| above "
                  f"tolerance ({tol_text}).",
                  f"Published config = the run uses the setting the card reports ({_published_settings()}); "
                  "other rows show ablation effects, not reproduction gaps.",
                  f"{PAIR_BASE_NAME} published = {pub.MINIMONKEY_CARD.title}, MMMU/MMB from the "
                  f"{pub.MINI_INTERNVL_CARD.title}. " + split_note])

    breakdowns = []
    for d, df in data.breakdowns.items():
        breakdowns.append(Block(d, ["Metric", *df.columns],
                                [[_text(m), *[_plain_number(v) for v in row]] for m, row in df.iterrows()],
                                ["'headline' is the number in the paper table; other rows as the scorer reports."]))

    sd = data.sample_diff
    diff_cols = list(SAMPLE_DIFF_COLUMNS)
    diff = Block(f"Per-sample diff: {PAIR_NEW_NAME} vs {PAIR_BASE_NAME}", diff_cols,
                 [[_text(r[c]) if not c.endswith(" score") else _plain_number(r[c]) for c in diff_cols]
                  for _, r in sd.iterrows()],
                 [f"Samples one run gets right (score ≥ {RIGHT_THRESHOLD}) and the other wrong; a failed sample "
                  "without a score counts as wrong. Pair: " + _pair_text(data.pair) + "."])

    counts_rows = []
    if not sd.empty:
        counts = sd.groupby("dataset", sort=False)["right"].value_counts().unstack(fill_value=0)
        counts = counts.reindex(columns=[PAIR_NEW_NAME, PAIR_BASE_NAME], fill_value=0)
        counts_rows = [[_text(d), _plain_number(float(r[PAIR_NEW_NAME])), _plain_number(float(r[PAIR_BASE_NAME]))]
                       for d, r in counts.iterrows()]
    diff_counts = Block("Per-sample diff: counts", ["Dataset", f"only {PAIR_NEW_NAME} right",
                                                     f"only {PAIR_BASE_NAME} right"], counts_rows)

    run_rows = []
    for r in data.runs:
        m = r.meta
        run_rows.append([_text(r.run_name), _text(f"{r.label} ({DEMO_TAG})" if r.demo else r.label),
                         _text(r.model), _text(r.msac), _text(r.scm), _text(m.get("tile_profile")), _text(r.demo),
                         _text(m.get("dtype")), _text(oom_fallbacks_text(m)),
                         _text(_finished_text(r)),
                         _text(len(m.get("datasets") or [])), _text(str(m.get("checkpoint_sha256") or "")[:12]),
                         _text(str(m.get("git_commit") or "")[:10]), _text(m.get("model_path"))])
    runs = Block("Runs", ["Run", "Label", "Model", "MSAC", "SCM", "Tile profile", "Demo", "Dtype",
                          "OOM 'A' fallbacks (failed, not reproduced)", "Finished",
                          "Datasets", "Checkpoint sha256", "Git commit", "Model path"], run_rows)
    return {"table": [table], "deltas": [deltas], "gaps": [gaps], "breakdowns": breakdowns,
            "per-sample diff": [diff_counts, diff], "runs": [runs]}


def _published_settings() -> str:
    """'Mini-Monkey: MSAC on, SCM off; ...' for every registered model with card rows (from the model registry)."""
    on = {True: "on", False: "off"}
    return "; ".join(f"{s.label}: MSAC {on[s.published_msac]}, SCM {on[s.published_scm]}"
                     for s in MODELS.values() if s.published)


def _finished_text(r: Run) -> str:
    t = r.meta.get("timings", {}).get("finished") if isinstance(r.meta.get("timings"), dict) else None
    if t not in (None, ""):
        return str(t)
    return datetime.fromtimestamp(r.finished, timezone.utc).strftime("%Y-%m-%d %H:%M UTC (run.json mtime)")


def _pair_text(pair: tuple[Run | None, Run | None]) -> str:
    new, base = pair
    return (f"{PAIR_NEW_NAME} = {new.display if new else 'no MSAC-on/SCM-off run'}, "
            f"{PAIR_BASE_NAME} = {base.display if base else 'no MSAC-off run'}")


# ----------------------------------------------------------------------------------------------- markdown
def _md_escape(s: str, limit: int | None = None) -> str:
    s = " ".join(str(s).split())
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("\\", "\\\\").replace("|", "\\|")


def _md_block(b: Block, level: int = 2, max_rows: int | None = None, clip: int | None = None,
              heading: bool = True) -> str:
    out = [f"{'#' * level} {b.title}", ""] if heading else []
    for n in b.notes if heading else ():  # one paragraph per note
        out += [n, ""]
    if not b.rows:
        out += ["_(none)_", ""]
        return "\n".join(out)
    numeric = [all(row[i].numeric for row in b.rows) for i in range(len(b.headers))]
    out.append("| " + " | ".join(_md_escape(h) for h in b.headers) + " |")
    out.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    rows = b.rows if max_rows is None else b.rows[:max_rows]
    for row in rows:
        cells = []
        for c in row:
            t = _md_escape(c.text, clip)
            cells.append(f"**{t}**" if c.bold and t else t)
        out.append("| " + " | ".join(cells) + " |")
    if max_rows is not None and len(b.rows) > max_rows:
        out.append(f"\n_… {len(b.rows) - max_rows} more rows in report.xlsx._")
    out.append("")
    return "\n".join(out)


def _markdown(data: ReportData, blocks: dict[str, list[Block]], charts: ReportPaths, work_dir: Path) -> str:
    parts = [f"# {REPORT_TITLE}", ""]
    if data.has_demo:
        parts += [f"> **{DEMO_BANNER}**", ""]
    parts += [f"{len(data.runs)} measured run(s) from `{work_dir}`. Also in this folder: `report.xlsx` "
              "(every table, full per-sample diff), `report.html` (tables + charts).", ""]
    parts.append(_md_block(blocks["table"][0]))
    parts.append(_md_block(blocks["deltas"][0]))
    parts.append(_md_block(blocks["gaps"][0]))
    parts += ["## Charts", "",
              f"![Scores, measured vs published]({charts.scores_chart.name})", "",
              f"![{PAIR_NEW_NAME} − {PAIR_BASE_NAME} per benchmark]({charts.delta_chart.name})", ""]
    parts += ["## Breakdowns", ""]
    parts += [_md_block(b, level=3) for b in blocks["breakdowns"]] or ["_(no sub-scores)_", ""]
    counts, diff = blocks["per-sample diff"]
    sd = data.sample_diff
    parts += [f"## {diff.title}", ""] + [x for n in diff.notes for x in (n, "")]
    if sd.empty:
        parts += ["_(none)_", ""]
    else:
        parts.append(_md_block(counts, heading=False))
        per = 10
        for d in dict.fromkeys(sd["dataset"]):
            idx = [i for i, ds in enumerate(sd["dataset"]) if ds == d]
            sub = Block(d, diff.headers, [diff.rows[i] for i in idx])
            parts.append(_md_block(sub, level=3, max_rows=per, clip=80))
    parts.append(_md_block(blocks["runs"][0]))
    return "\n".join(parts).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------- xlsx
def write_block(ws, row: int, b: Block, heading: bool = True) -> tuple[int, int]:
    """Write one block (title, notes, header row, cells) into the sheet from ``row``; returns (next free row after a
    blank one, header row). Every xlsx table of the report goes through here."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    fills = {"pos": PatternFill("solid", fgColor="C6EFCE"), "neg": PatternFill("solid", fgColor="FFC7CE")}
    if heading:
        ws.cell(row, 1, b.title).font = Font(bold=True, size=13)
        row += 1
        for n in b.notes:
            ws.cell(row, 1, n).font = Font(italic=True, color="595959")
            row += 1
    header_row = row
    set_before = {j: ws.column_dimensions.get(get_column_letter(j)) for j in range(1, len(b.headers) + 1)}
    widths = {j: (d.width if d is not None and d.width else 8) for j, d in set_before.items()}   # widest wins
    for j, h in enumerate(b.headers, 1):
        c = ws.cell(row, j, h)
        c.font, c.fill, c.border = Font(bold=True), PatternFill("solid", fgColor="D9D9D9"), Border(bottom=Side("thin"))
        c.alignment = Alignment(wrap_text=True, vertical="bottom")
        widths[j] = max(widths[j], min(len(h) + 2, 14))
    row += 1
    if not b.rows:
        ws.cell(row, 1, "(none)").font = Font(italic=True)
        row += 1
    for cells in b.rows:
        for j, cell in enumerate(cells, 1):
            value = ILLEGAL_CHARACTERS_RE.sub("", cell.value) if isinstance(cell.value, str) else cell.value
            c = ws.cell(row, j, value)
            if cell.number_format:
                c.number_format = cell.number_format
            if cell.tone:
                c.fill = fills[cell.tone]
            if cell.bold:
                c.font = Font(bold=True)
            widths[j] = max(widths.get(j, 8), min(len(cell.text) + 2, 60 if not cell.numeric else 14))
        row += 1
    for j, w in widths.items():
        ws.column_dimensions[get_column_letter(j)].width = w
    return row + 1, header_row


def _banner(ws) -> int:
    from openpyxl.styles import Font, PatternFill

    ws.cell(1, 1, DEMO_BANNER).font = Font(bold=True, color="9C0006")
    ws.cell(1, 1).fill = PatternFill("solid", fgColor="FFF2CC")
    return 3


def _write_xlsx(path: Path, data: ReportData, blocks: dict[str, list[Block]]) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for name in SHEET_NAMES:
        ws = wb.create_sheet(name)
        row = _banner(ws) if data.has_demo else 1
        header_row = None
        for b in blocks[name]:
            row, header = write_block(ws, row, b)
            header_row = header_row or header
        if header_row and name in ("table", "deltas", "gaps"):
            ws.freeze_panes = ws.cell(header_row + 1, 2)
    wb.save(path)


def add_sheet(path: Path, name: str, blocks: list[Block], demo: bool = False, table_only: bool = False):
    """Add (or replace) the sheet ``name`` of the report's workbook, holding ``blocks``; returns the workbook (saved)
    and the sheet, for a section that adds images. ``table_only``: one block written as a bare table (header in
    row 1, no title or notes) with an autofilter, for lists users sort and filter."""
    from openpyxl import load_workbook

    wb = load_workbook(path)
    if name in wb.sheetnames:
        del wb[name]
    ws = wb.create_sheet(name)
    row = _banner(ws) if demo else 1
    for b in blocks:
        row, _ = write_block(ws, row, b, heading=not table_only)
    if table_only:
        ws.auto_filter.ref = ws.dimensions
    wb.save(path)
    return wb, ws


def insert_section(text: str, marker: str, section: str) -> str:
    """``section`` placed before ``marker`` in a report page (md or html), or at its end when the marker is absent."""
    at = text.find(marker)
    if at >= 0:
        return text[:at] + section + "\n" + text[at:]
    if "</body>" in text:
        return text.replace("</body>", section + "</body>", 1)
    return text + section


# ----------------------------------------------------------------------------------------------- html
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1800px}
h1{margin-top:0}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
.banner{background:#fff2cc;border:2px solid #c00;color:#9c0006;font-weight:bold;padding:10px 14px;margin:12px 0}
.note{color:#555;font-size:13px;margin:4px 0}
.scroll{overflow-x:auto;margin:8px 0 16px}
table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #d0d0d0;padding:3px 7px;vertical-align:top;white-space:nowrap}
th{background:#eee}
td:first-child{position:sticky;left:0;background:#fff;z-index:1}
th:first-child{position:sticky;left:0;z-index:2}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.pos{background:#c6efce}td.neg{background:#ffc7ce}td.flag{font-weight:bold;outline:2px solid #333;outline-offset:-2px}
tr.demo td:first-child{color:#9c0006}
td.long{white-space:normal;min-width:220px;max-width:420px;word-break:break-word}
img{max-width:100%;border:1px solid #ddd;margin:8px 0}
"""


def _html_block(b: Block, level: int = 2, max_rows: int | None = None, heading: bool = True,
                sortable: bool = False) -> str:
    """``sortable``: a click on a column header sorts the table (with the sort script the significance section adds)."""
    e = html.escape
    out = [f"<h{level}>{e(b.title)}</h{level}>"] if heading else []
    out += [f'<p class="note">{e(n)}</p>' for n in b.notes] if heading else []
    if not b.rows:
        return "\n".join(out + ["<p><em>(none)</em></p>"])
    table = '<table class="sortable">' if sortable else "<table>"
    out.append(f'<div class="scroll">{table}<thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in b.headers)
               + "</tr></thead><tbody>")
    rows = b.rows if max_rows is None else b.rows[:max_rows]
    for row in rows:
        demo = any(DEMO_TAG in c.text for c in row[:2])
        tds = []
        for c in row:
            cls = [k for k, on in (("num", c.numeric), (c.tone, bool(c.tone)), ("flag", c.bold),
                                   ("long", len(c.text) > 60 and c.html is None), (c.css, bool(c.css))) if on]
            attr = f' class="{" ".join(cls)}"' if cls else ""
            if c.html is not None:
                attr += f' data-sort="{e(c.text)}"'
            tds.append(f"<td{attr}>{e(c.text) if c.html is None else c.html}</td>")
        out.append(f'<tr{" class=demo" if demo else ""}>' + "".join(tds) + "</tr>")
    out.append("</tbody></table></div>")
    if max_rows is not None and len(b.rows) > max_rows:
        out.append(f'<p class="note">… {len(b.rows) - max_rows} more rows in report.xlsx.</p>')
    return "\n".join(out)


def _html(data: ReportData, blocks: dict[str, list[Block]], paths: ReportPaths, work_dir: Path) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{e(REPORT_TITLE)}</title>", f"<style>{_CSS}</style></head><body>",
             f"<h1>{e(REPORT_TITLE)}</h1>"]
    if data.has_demo:
        parts.append(f'<div class="banner">{e(DEMO_BANNER)}</div>')
    parts.append(f'<p class="note">{len(data.runs)} measured run(s) from <code>{e(str(work_dir))}</code>.</p>')
    parts += [_html_block(blocks["table"][0]), _html_block(blocks["deltas"][0]), _html_block(blocks["gaps"][0])]
    parts.append("<h2>Charts</h2>")
    for p, alt in ((paths.scores_chart, "Scores, measured vs published"),
                   (paths.delta_chart, f"{PAIR_NEW_NAME} − {PAIR_BASE_NAME} per benchmark")):
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(f'<img alt="{e(alt)}" src="data:image/png;base64,{b64}">')
    parts.append("<h2>Breakdowns</h2>")
    parts += [_html_block(b, level=3) for b in blocks["breakdowns"]] or ["<p><em>(no sub-scores)</em></p>"]
    counts, diff = blocks["per-sample diff"]
    if diff.rows:
        parts.append(f"<h2>{e(diff.title)}</h2>" + "".join(f'<p class="note">{e(n)}</p>' for n in diff.notes))
        parts += [_html_block(counts, heading=False), _html_block(diff, max_rows=500, heading=False)]
    else:
        parts.append(_html_block(diff))
    parts.append(_html_block(blocks["runs"][0]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


