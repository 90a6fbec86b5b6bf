"""The model and benchmark registries are the one place per fact: a fifth model is one record, and every consumer
(CLI choices, runner, wrappers, fixtures, report) follows it; no other Python module spells a model name."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from runner_utils import FAST_TILES

from minimonkey_eval.datasets.registry import BENCHMARKS, get_benchmark
from minimonkey_eval.models import registry
from minimonkey_eval.models.registry import INTERNVL2, MINIMONKEY, ModelSpec, get_model

PACKAGE = Path(registry.__file__).resolve().parents[1]


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings}


def test_model_names_appear_in_one_python_module():
    """No string outside the registry (help texts, titles and error messages included; docstrings excepted) spells a
    model's name or label: they all derive from the registry."""
    spelled = {n for spec in registry.MODELS.values() for n in (spec.name, spec.label)}
    word = re.compile("|".join(rf"(?<![\w-]){re.escape(n)}(?![\w-])" for n in sorted(spelled, key=len, reverse=True)))
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "registry.py" and path.parent.name == "models":
            continue
        hits = sorted({m.group(0) for text in _string_constants(path) for m in word.finditer(text)})
        if hits:
            offenders[str(path.relative_to(PACKAGE))] = hits
    assert offenders == {}


def test_lookup_is_tolerant_of_case_and_separators_but_refuses_unknown_names():
    assert get_model("mini_monkey").name == "MiniMonkey"
    assert get_model("internvl2-2b").label == "InternVL2-2B"
    with pytest.raises(ValueError, match="unknown model 'GPT-9'; known: .*MiniMonkey"):
        get_model("GPT-9")
    with pytest.raises(ValueError, match="family must be one of"):
        ModelSpec("X", "X", "X_PATH", "llava", "2b")


def test_benchmark_record_carries_circular_and_extractor():
    assert {b.column for b in BENCHMARKS if b.circular} == {"CCBench", "MMBench_EN", "MMBench_CN"}
    assert {b.column for b in BENCHMARKS if b.answer_extractor != "vlmeval"} == {"MathVista"}
    from minimonkey_eval.datasets.fixtures import sample_rows

    for name in ("MME", "OCRBench", "DocVQA_VAL"):
        rows = sample_rows(name)
        bench = get_benchmark(name)
        groups = rows["index"].nunique() if name != "MME" else rows["image_path"].nunique()
        assert groups == bench.fixture_rows, name


@pytest.fixture
def fifth_model(monkeypatch):
    spec = ModelSpec("Tiny-Clone-2B", "Tiny Clone 2B", "TINY_CLONE_2B_PATH", INTERNVL2, "2b")
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    return spec


def test_a_fifth_model_is_one_record(fifth_model, tmp_path, capsys):
    from minimonkey_eval import cli
    from minimonkey_eval.datasets.fixtures import write_sample_tsvs

    out = tmp_path / "fx"
    assert cli.main(["make-fixtures", "--out", str(out), "--model", fifth_model.name, "--no-data"]) == 0
    write_sample_tsvs(out / "LMUData", datasets=["OCRBench"], n=2)
    work = tmp_path / "results"
    argv = ["run", "--model", fifth_model.name, "--model-path", str(out / "checkpoint"), "--data", "OCRBench",
            "--data-root", str(out / "LMUData"), "--work-dir", str(work), "--run-name", "clone", "--limit", "2", "--tiles", FAST_TILES,
            "--max-new-tokens", "4", "--dtype", "fp32", "--device", "cpu"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    meta = json.loads((work / "clone" / "run.json").read_text())
    assert meta["model"] == fifth_model.name and meta["label"].startswith(fifth_model.label)
    assert len(pd.read_csv(work / "clone" / "OCRBench_samples.csv")) == 2
    assert cli.main(["report", "--work-dir", str(work)]) == 0
    table = pd.read_excel(work / "report" / "report.xlsx", sheet_name="table")
    assert any(str(v).startswith(fifth_model.label) for v in table.iloc[:, 0])


def test_fifth_model_with_mini_monkey_family_gets_msac_tiles(monkeypatch):
    spec = registry.register(ModelSpec("Clone-Monkey", "Clone Monkey", "CLONE_MONKEY_PATH", MINIMONKEY, "2b"))
    try:
        from minimonkey_eval.models.tile_profiles import resolve_tiles

        assert resolve_tiles(spec.name, "OCRBench") == resolve_tiles("MiniMonkey", "OCRBench")
        assert resolve_tiles(spec.name, "OCRBench").kind == "msac"
    finally:
        registry.MODELS.pop(spec.name)
