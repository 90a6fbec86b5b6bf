"""The model and benchmark registries are the one place per fact: a fifth model is one record, and every consumer
(CLI choices, runner, wrappers, fixtures, report) follows it; no other Python module spells a model name."""
from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from helpers.runner_utils import FAST_TILES

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
            "--data-root", str(out / "LMUData"), "--work-dir", str(work), "--run-name", "clone", "--limit", "2",
            "--tiles", FAST_TILES,
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


def test_report_reads_the_model_registry_when_built(fifth_model, monkeypatch, tmp_path):
    """The report's title, card names, pair labels and rows come from the model registry when a report is built: a
    model registered (and a label changed) after every module was imported shows up."""
    from minimonkey_eval.eval.report.build import build_report

    new = get_model(registry.PAIR_NEW)
    monkeypatch.setitem(registry.MODELS, new.name, dataclasses.replace(new, label="Mini-Monkey Relabelled"))
    run = tmp_path / "work" / "clone"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_name": "clone", "model": fifth_model.name,
                                              "label": fifth_model.label, "datasets": ["OCRBench"]}))
    (run / "summary.csv").write_text("run_name,model,OCRBench\nclone,Tiny-Clone-2B,123\n")
    md = build_report(tmp_path / "work", tmp_path / "out").markdown.read_text()
    assert md.startswith("# Mini-Monkey Relabelled reproduction report\n")
    assert "| Mini-Monkey (= Mini-Monkey Relabelled) | published (Mini-Monkey Relabelled card) |" in md
    assert "| Mini-Monkey Relabelled − InternVL2-2B (published) |" in md
    row = next(line for line in md.splitlines() if line.startswith(f"| {fifth_model.label} | measured: clone |"))
    assert "| 123 |" in row
    assert f"| clone | {fifth_model.label} | {fifth_model.name} |" in md       # the Runs table


def test_benchmark_choices_are_typed_and_checked():
    from minimonkey_eval.datasets.registry import Kind, PaperUnit, Statistic, Unit, resampling

    with pytest.raises(ValueError, match="'Q/A' is not a valid Kind"):
        dataclasses.replace(get_benchmark("AI2D"), kind="Q/A")
    mme = get_benchmark("MME")
    assert mme.kind is Kind.YN and mme.kind == "Y/N" and f"{mme.kind}" == "Y/N"     # a string enum
    assert {b.column for b in BENCHMARKS if b.paper_unit is not PaperUnit.PERCENT} == {"MME", "OCRBench"}
    assert [get_benchmark(c).decimals for c in ("MME", "OCRBench", "AI2D")] == [1, 0, 1]
    assert [get_benchmark(c).chart_divisor for c in ("MME", "OCRBench", "AI2D")] == [28.0, 10.0, 1.0]
    assert [get_benchmark(c).gap_tolerance for c in ("MME", "OCRBench", "AI2D")] == [5.0, 5.0, 0.5]
    assert resampling("MMBench_EN").unit is Unit.CIRCULAR_GROUP and resampling("MME").statistic is Statistic.MME
    assert resampling("DocVQA").description == "question (ANLS)" and resampling("OCRBench").scale == 1.0
    with pytest.raises(ValueError, match="submission-only"):
        resampling("DocVQA_TEST")
