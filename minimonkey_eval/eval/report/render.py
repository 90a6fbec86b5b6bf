"""Report rendering: sections given as data (blocks and sheets) -> report.md, report.html and report.xlsx in one pass.

A section is a :class:`Section`: its ``page`` (a list of blocks, shown in report.md and report.html in order) and its
``sheets`` (workbook sheets holding :class:`Table` blocks, and images). Blocks: :class:`Heading`, :class:`Note` (a
paragraph), :class:`Banner`, :class:`Bullets`, :class:`Empty` (an italic "(none)" line), :class:`Image` (a PNG the
section wrote), :class:`Table` (title, notes, header row, :class:`Cell` rows) and :class:`Raw` (format-specific text:
a script, a style); :class:`Only` shows its blocks in one format. The cell makers (``text_cell``, ``value_cell``,
``delta_cell``, ``number_cell``) format numbers from the benchmark registry, so the three formats always show the
same numbers; the texts and scales several sections share (``column_title``, ``split_note``, ``normalised``,
``scale_note``) are here too. ``write_report`` renders every section's blocks once: nothing is written before all
sections are built and nothing is reopened after.
"""
from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from minimonkey_eval.datasets.registry import PAPER_COLUMNS, get_benchmark
from minimonkey_eval.eval.report import published as pub
from minimonkey_eval.eval.report.collect import DEMO_TAG, SHEET_NAMES, ReportPaths


# ----------------------------------------------------------------------------------------------- cells
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


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def text_cell(v: Any) -> Cell:
    """Any value as text ('' for missing, yes/no for booleans)."""
    if is_missing(v):
        return Cell(None, "")
    if isinstance(v, bool):
        return Cell("yes" if v else "no", "yes" if v else "no")
    return Cell(str(v), str(v))


def value_cell(column: str, v: float) -> Cell:
    """A headline in the benchmark's paper units, with the benchmark's decimals."""
    d = get_benchmark(column).decimals
    if is_missing(v):
        return Cell(None, "", numeric=True)
    return Cell(float(v), f"{v:.{d}f}", "0" if d == 0 else "0." + "0" * d, numeric=True)


def delta_cell(column: str, v: float, flagged: bool = False) -> Cell:
    """A difference of headlines (signed, green / red, bold when flagged), with the benchmark's difference decimals."""
    d = get_benchmark(column).diff_decimals
    if is_missing(v):
        return Cell(None, "", numeric=True)
    z = "0" if d == 0 else "0." + "0" * d
    tone = "pos" if v > 0 else "neg" if v < 0 else ""
    text = f"{v:+.{d}f}" if round(v, d) != 0 else f"{0:.{d}f}"
    return Cell(float(v), text, f"+{z};-{z};{z}", tone=tone, bold=flagged, numeric=True)


def number_cell(v: float) -> Cell:
    """A number with at most two decimals, trailing zeros dropped."""
    if is_missing(v):
        return Cell(None, "", numeric=True)
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return Cell(float(v), text, "0.0#" if text != f"{v:.0f}" else "0", numeric=True)


# ----------------------------------------------------------------------------------------------- shared texts
def column_title(column: str) -> str:
    """A report column as its table header (the registry's ``Benchmark.title``)."""
    return get_benchmark(column).title


def split_note() -> str:
    """'Split caveats: DocVQA: published = DocVQA test (server); ...' (the cards' splits vs the harness's)."""
    return "Split caveats: " + "; ".join(f"{column_title(k)}: {v}" for k, v in pub.SPLIT_NOTES.items()) + "."


def normalised(column: str, v: float) -> float:
    """A headline or difference of ``column`` on the charts' common 0-100 scale (``Benchmark.chart_divisor``)."""
    return v / get_benchmark(column).chart_divisor


def scale_note() -> str:
    """'0-100 scale: MME ÷ 28, OCRBench ÷ 10, others percent' (chart axes)."""
    scaled = [f"{b.column} ÷ {b.chart_divisor:g}" for b in map(get_benchmark, PAPER_COLUMNS) if b.chart_divisor != 1]
    return "0-100 scale: " + ", ".join([*scaled, "others percent"])


# ----------------------------------------------------------------------------------------------- blocks
@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Note:
    """A paragraph (html: a grey note)."""
    text: str


@dataclass
class Banner:
    """The demo warning at the top of the page."""
    text: str


@dataclass
class Bullets:
    """Short notes (md: a list; html: one grey note each)."""
    items: list[str]


@dataclass
class Empty:
    """'(none)'-style line in italics."""
    text: str = "none"


@dataclass
class Image:
    path: Path
    alt: str


@dataclass
class Raw:
    """Text for one format only, as is (an html script or style)."""
    md: str = ""
    html: str = ""


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    level: int = 2                   # heading level on the page
    heading: bool = True             # title and notes shown (False: the bare table)
    md_rows: int | None = None       # rows shown in report.md / report.html (None: all; the workbook has all)
    html_rows: int | None = None
    clip: int | None = None          # md: cell text clipped to this many characters
    sortable: bool = False           # html: a click on a header sorts (the script comes with the section)
    empty: str = "none"              # page: shown instead of an empty table (the workbook: '(none)' under its header)
    filter_id: str | None = None     # html: a search box filtering the rows (ids '{filter_id}-filter' / '-table')
    filter_placeholder: str = "filter rows"

    @classmethod
    def of(cls, title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], notes: Iterable[str] = (),
           css: dict[tuple[int, int], str] | None = None, **options) -> Table:
        """Rows of plain values (or ready ``Cell``s, e.g. a thumbnail) as a table; ``css``: (row, column) -> html
        class of that cell."""
        css = css or {}
        cells = [[v if isinstance(v, Cell) else Cell(v, "" if v is None else str(v), css=css.get((i, j), ""))
                  for j, v in enumerate(row)] for i, row in enumerate(rows)]
        return cls(title, list(headers), cells, list(notes), **options)


@dataclass
class Only:
    """Blocks shown in one format only ('md' or 'html')."""
    fmt: Literal["md", "html"]
    blocks: list[Block]


Block = Union[Heading, Note, Banner, Bullets, Empty, Image, Raw, Table, Only]


@dataclass
class Sheet:
    """One workbook sheet: tables one below the other (``table_only``: one bare table with an autofilter, for lists
    users sort and filter), then images at cell anchors."""
    name: str
    tables: list[Table] = field(default_factory=list)
    banner: str | None = None        # a warning in the first row (demo runs)
    freeze: bool = False             # freeze the header row and the first column of the first table
    table_only: bool = False
    images: list[tuple[str, Path]] = field(default_factory=list)   # (anchor cell, PNG)


@dataclass
class Section:
    page: list[Block] = field(default_factory=list)
    sheets: list[Sheet] = field(default_factory=list)


def _flat(blocks: Iterable[Block], fmt: str) -> list[Block]:
    out: list[Block] = []
    for b in blocks:
        if isinstance(b, Only):
            out += _flat(b.blocks, fmt) if b.fmt == fmt else []
        else:
            out.append(b)
    return out


# ----------------------------------------------------------------------------------------------- markdown
def md_escape(s: str, limit: int | None = None) -> str:
    s = " ".join(str(s).split())
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("\\", "\\\\").replace("|", "\\|")


def md_table(b: Table) -> str:
    out = [f"{'#' * b.level} {b.title}", ""] if b.heading else []
    for n in b.notes if b.heading else ():  # one paragraph per note
        out += [n, ""]
    if not b.rows:
        out += [f"_({b.empty})_", ""]
        return "\n".join(out)
    numeric = [all(row[i].numeric for row in b.rows) for i in range(len(b.headers))]
    out.append("| " + " | ".join(md_escape(h) for h in b.headers) + " |")
    out.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    rows = b.rows if b.md_rows is None else b.rows[:b.md_rows]
    for row in rows:
        cells = []
        for c in row:
            t = md_escape(c.text, b.clip)
            cells.append(f"**{t}**" if c.bold and t else t)
        out.append("| " + " | ".join(cells) + " |")
    if len(rows) < len(b.rows):
        out.append(f"\n_… {len(b.rows) - len(rows)} more rows in report.xlsx._")
    out.append("")
    return "\n".join(out)


def md_block(b: Block) -> str:
    """One block as markdown, ending with a newline ('' for a block with nothing to show)."""
    if isinstance(b, Heading):
        return f"{'#' * b.level} {b.text}\n"
    if isinstance(b, Note):
        return f"{b.text}\n"
    if isinstance(b, Banner):
        return f"> **{b.text}**\n"
    if isinstance(b, Bullets):
        return "".join(f"- {i}\n" for i in b.items)
    if isinstance(b, Empty):
        return f"_({b.text})_\n"
    if isinstance(b, Image):
        return f"![{b.alt}]({b.path.name})\n"
    if isinstance(b, Raw):
        return b.md
    if isinstance(b, Table):
        return md_table(b)
    raise TypeError(f"not a report block: {b!r}")


def render_markdown(blocks: Iterable[Block]) -> str:
    parts = [text for text in (md_block(b) for b in _flat(blocks, "md")) if text]
    return "\n".join(parts).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------- html
CSS = """
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
_FILTER_JS = """<script>
document.getElementById('{id}-filter').addEventListener('input', function (e) {
  var q = e.target.value.toLowerCase();
  document.querySelectorAll('#{id}-table tbody tr').forEach(function (tr) {
    tr.style.display = tr.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
  });
});
</script>"""


def html_table(b: Table) -> str:
    e = html.escape
    out = [f"<h{b.level}>{e(b.title)}</h{b.level}>"] if b.heading else []
    out += [f'<p class="note">{e(n)}</p>' for n in b.notes] if b.heading else []
    if not b.rows:
        return "\n".join(out + [f"<p><em>({e(b.empty)})</em></p>"])
    if b.filter_id:
        out.append(f'<p><input id="{b.filter_id}-filter" type="search" placeholder="{e(b.filter_placeholder)}" '
                   'size="40"></p>')
    tag = '<table class="sortable">' if b.sortable else "<table>"
    table = [f'<div class="scroll">{tag}<thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in b.headers)
             + "</tr></thead><tbody>"]
    rows = b.rows if b.html_rows is None else b.rows[:b.html_rows]
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
        table.append(f'<tr{" class=demo" if demo else ""}>' + "".join(tds) + "</tr>")
    table.append("</tbody></table></div>")
    if b.filter_id:
        out.append(f'<div id="{b.filter_id}-table">' + "\n".join(table) + "</div>"
                   + _FILTER_JS.replace("{id}", b.filter_id))
    else:
        out += table
    if len(rows) < len(b.rows):
        out.append(f'<p class="note">… {len(b.rows) - len(rows)} more rows in report.xlsx.</p>')
    return "\n".join(out)


def html_block(b: Block) -> str:
    """One block as html ('' for a block with nothing to show)."""
    e = html.escape
    if isinstance(b, Heading):
        return f"<h{b.level}>{e(b.text)}</h{b.level}>"
    if isinstance(b, Note):
        return f'<p class="note">{e(b.text)}</p>'
    if isinstance(b, Banner):
        return f'<div class="banner">{e(b.text)}</div>'
    if isinstance(b, Bullets):
        return "\n".join(f'<p class="note">{e(i)}</p>' for i in b.items)
    if isinstance(b, Empty):
        return f"<p><em>({e(b.text)})</em></p>"
    if isinstance(b, Image):
        b64 = base64.b64encode(b.path.read_bytes()).decode("ascii")
        return f'<img alt="{e(b.alt)}" src="data:image/png;base64,{b64}">'
    if isinstance(b, Raw):
        return b.html
    if isinstance(b, Table):
        return html_table(b)
    raise TypeError(f"not a report block: {b!r}")


def render_html(blocks: Iterable[Block], title: str) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body>"]
    parts += [text for text in (html_block(b) for b in _flat(blocks, "html")) if text]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------------------- xlsx
def write_table(ws, row: int, b: Table, heading: bool = True) -> tuple[int, int]:
    """Write one table (title, notes, header row, cells) into the sheet from ``row``; returns (next free row after a
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


def write_sheet(wb, sheet: Sheet) -> None:
    from openpyxl.drawing.image import Image as XlImage
    from openpyxl.styles import Font, PatternFill

    ws = wb.create_sheet(sheet.name)
    row = 1
    if sheet.banner:
        ws.cell(1, 1, sheet.banner).font = Font(bold=True, color="9C0006")
        ws.cell(1, 1).fill = PatternFill("solid", fgColor="FFF2CC")
        row = 3
    header_row = None
    for t in sheet.tables:
        row, header = write_table(ws, row, t, heading=not sheet.table_only)
        header_row = header_row or header
    if sheet.freeze and header_row:
        ws.freeze_panes = ws.cell(header_row + 1, 2)
    if sheet.table_only:
        ws.auto_filter.ref = ws.dimensions
    for anchor, path in sheet.images:
        ws.add_image(XlImage(str(path)), anchor)


def write_workbook(path: Path, sheets: Iterable[Sheet]) -> None:
    """The workbook: the core sheets (``SHEET_NAMES``) first, then every other sheet, each group in section order."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for sheet in sorted(sheets, key=lambda s: s.name not in SHEET_NAMES):
        write_sheet(wb, sheet)
    wb.save(path)


# ----------------------------------------------------------------------------------------------- the report
def write_report(paths: ReportPaths, sections: Sequence[Section], title: str) -> None:
    """report.md, report.html and report.xlsx from the built sections, each written once."""
    page = [b for s in sections for b in s.page]
    paths.markdown.write_text(render_markdown(page), encoding="utf-8")
    paths.html.write_text(render_html(page, title), encoding="utf-8")
    write_workbook(paths.xlsx, [sheet for s in sections for sheet in s.sheets])
