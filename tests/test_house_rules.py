"""The tests' own layout: tests/ mirrors the package, shared code lives in the ``helpers`` package, and no test
module imports another (a test module is collected, never imported)."""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "minimonkey_eval"


def _test_modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "helpers" not in p.relative_to(TESTS).parts)


def test_test_folders_mirror_the_package():
    folders = {p.parent.relative_to(TESTS) for p in _test_modules()} - {Path(".")}
    missing = [str(f) for f in folders if not (PACKAGE / f).is_dir()]
    assert missing == [], f"test folders with no package folder of that name: {missing}"


def test_no_test_module_imports_another():
    names = {p.stem for p in _test_modules()}
    offenders = []
    for p in _test_modules() + sorted((TESTS / "helpers").glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{p.relative_to(TESTS)} imports {m}" for m in modules if m.split(".")[-1] in names]
    assert offenders == []


def test_test_module_names_are_unique():
    stems = [p.stem for p in _test_modules()]
    assert sorted({s for s in stems if stems.count(s) > 1}) == []
