"""The report's layering, checked on the source: sections share only public names, the report never imports the
runners (eval/run, eval/backends, the sweep's grid), the statistics never import the fixtures, and the report is
written once (no module under eval/report reopens what it wrote)."""
from __future__ import annotations

import ast
from pathlib import Path

import minimonkey_eval

PACKAGE = Path(minimonkey_eval.__file__).resolve().parent
SCOPE = [*sorted((PACKAGE / "eval" / "report").glob("*.py")), *sorted((PACKAGE / "eval" / "stats").glob("*.py")),
         PACKAGE / "eval" / "scoring.py", *sorted((PACKAGE / "eval" / "sweep").glob("*.py"))]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


def test_no_private_name_crosses_a_module():
    offenders = {f"{p.relative_to(PACKAGE)}: {m}.{n}" for p in SCOPE for m, names in _imports(p)
                 if m.startswith("minimonkey_eval") for n in names if n.startswith("_")}
    assert offenders <= {"eval/sweep/grid.py: minimonkey_eval.eval.run.folder._now"}   # the runner's clock


def test_report_and_stats_stay_in_their_layer():
    runners = ("minimonkey_eval.eval.run", "minimonkey_eval.eval.backends", "minimonkey_eval.eval.sweep.grid")
    forbidden = {"report": runners, "stats": ("minimonkey_eval.datasets.fixtures", "minimonkey_eval.eval.backends")}
    offenders = set()
    for p in SCOPE:
        for m, _ in _imports(p):
            if any(m == f or m.startswith(f + ".") for f in forbidden.get(p.parent.name, ())):
                offenders.add(f"{p.relative_to(PACKAGE)} imports {m}")
    for name in ("state.py", "charts.py"):   # the sweep's reader and charts never import its runner
        offenders |= {f"sweep/{name} imports {m}" for m, _ in _imports(PACKAGE / "eval" / "sweep" / name)
                      if m == "minimonkey_eval.eval.sweep.grid"
                      or m.split(".")[:3] == ["minimonkey_eval", "eval", "run"]}
    assert offenders == set()


def test_the_report_is_written_once():
    """Only render.py writes the report's md / html / xlsx, and nothing reads them back or reloads the workbook."""
    for p in sorted((PACKAGE / "eval" / "report").glob("*.py")):
        text = p.read_text(encoding="utf-8")
        assert "load_workbook" not in text and "markdown.read_text" not in text and "html.read_text" not in text, p
        if p.name != "render.py":
            assert ".markdown.write_text" not in text and ".html.write_text" not in text and "wb.save" not in text, p


def test_sections_are_one_list():
    from minimonkey_eval.eval.report.build import SECTIONS

    names = [f"{f.__module__.rsplit('.', 1)[1]}.{f.__name__}" for f in SECTIONS]
    assert names[0] == "tables.header" and names[-1] == "tables.runs"
    assert {"landscape.section", "significance_section.section", "mismatch_section.section"} <= set(names)
