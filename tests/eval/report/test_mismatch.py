"""``mismatch_reasons``: the reasons a run may not match the card, read from a hand-written run folder."""
from __future__ import annotations

import json
import math

import pandas as pd

from minimonkey_eval.datasets.registry import PAPER_COLUMNS
from minimonkey_eval.eval.report.mismatch import mismatch_reasons


def _run_folder(tmp_path, **meta):
    run = tmp_path / "run"
    run.mkdir()
    base = {"model": "MiniMonkey", "tile_model": "MiniMonkey", "msac": True, "scm": False,
            "tile_profile": "monkey-repo", "tiles_override": None, "dtype": "float32",
            "argv": ["minimonkey-eval", "run", "--attn", "eager"], "limit": None, "demo": False,
            "versions": {"torch": "2.4.0", "transformers": "4.44.0"},
            "datasets": ["DocVQA_VAL", "MathVista_MINI", "MMBench_DEV_EN"],
            "tiles": {"DocVQA_VAL": {"kind": "msac", "tiles": "1-24/1-8", "max_new_tokens": 1024},
                      "MathVista_MINI": {"kind": "msac", "tiles": "12-24/3-5", "max_new_tokens": 1024}},
            "results": {"DocVQA_VAL": {"rows": 10, "failed": 3, "oom_fallbacks": 2, "extraction": "rule-based metric"},
                        "MathVista_MINI": {"rows": 10, "failed": 0, "oom_fallbacks": 0,
                                           "extraction": "rule-based (offline)"},
                        "MMBench_DEV_EN": {"rows": 10, "failed": 0}}}
    base.update(meta)
    (run / "run.json").write_text(json.dumps(base))
    row = {"run_name": "run", "model": "MiniMonkey", "label": "x", "demo": False}
    row.update({c: math.nan for c in PAPER_COLUMNS})
    row.update({"DocVQA": 80.0, "MathVista": 45.0})
    pd.DataFrame([row]).to_csv(run / "summary.csv", index=False)
    pd.DataFrame({"index": [1, 2, 3, 4], "question": "q", "answer": "a", "prediction": "p", "score": [1, 0, "", 1],
                  "image_path": "", "failed": [False, False, True, False],
                  "reason": ["oom: retried with tiles 1-12/1-4", "", "generate: x", ""]}
                 ).to_csv(run / "DocVQA_VAL_samples.csv", index=False)
    return run


def test_reasons_per_published_benchmark(tmp_path):
    out = {m.column: m for m in mismatch_reasons(_run_folder(tmp_path))}
    assert set(out) == {"DocVQA", "MathVista"}          # MMBench: no Mini-Monkey card number
    doc = out["DocVQA"]
    assert doc.published == 87.4 and doc.ours == 80.0 and math.isclose(doc.gap, -7.4)
    kinds = {r.kind: r.text for r in doc.reasons}
    assert "DocVQA test (server)" in kinds["split"]
    assert "monkey-repo: 1-24/1-8" in kinds["tiles"] and "internvl_chat.py, L280-284" in kinds["tiles"]
    assert "authors ran bfloat16" in kinds["dtype"] and "eager" in kinds["attention"]
    assert "transformers 4.44.0" in kinds["versions"] and "pin transformers 4.37.2" in kinds["versions"]
    assert kinds["failed"].startswith("3 of 10") and kinds["oom_fallback"].startswith("2 samples")
    assert kinds["oom_retried"].startswith("1 samples")
    assert "config" not in kinds and "limit" not in kinds
    math_kinds = {r.kind: r.text for r in out["MathVista"].reasons}
    assert "GPT judge" in math_kinds["extraction"] and "split" not in math_kinds and "failed" not in math_kinds


def test_config_limit_demo_and_no_card(tmp_path):
    run = _run_folder(tmp_path, scm=True, limit=5, demo=True, dtype="bfloat16", tiles_override="4-4/2-2",
                      versions={"torch": "2.1", "transformers": "4.37.2"})
    kinds = {r.kind: r.text for r in mismatch_reasons(run)[0].reasons}
    assert "SCM on" in kinds["config"] and "ablation" in kinds["config"]
    assert kinds["limit"] == "only the first 5 rows (--limit)" and "demo" in kinds
    assert kinds["dtype"] == "dtype bfloat16" and "pin" not in kinds["versions"]
    assert "4-4/2-2 given on the command line" in kinds["tiles"]
    (run / "run.json").write_text(json.dumps({"model": "SomethingElse", "datasets": ["DocVQA_VAL"]}))
    assert mismatch_reasons(run) == []
    assert mismatch_reasons(tmp_path / "missing") == []
