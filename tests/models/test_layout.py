"""The engine package never imports vlmeval: it must run on a bare GPU box with torch + transformers only."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "minimonkey_eval" / "models"


def test_no_vlmeval_import_statement_under_models():
    offenders = []
    for path in sorted(MODELS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "vlmeval"]
    assert offenders == []


def test_engine_loads_and_answers_with_vlmeval_unimportable(tiny_checkpoint):
    """Every models/ module imports, and the pipeline answers, while any vlmeval import raises."""
    code = f"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "vlmeval":
            raise ImportError("vlmeval blocked by the test")
sys.meta_path.insert(0, Block())
import minimonkey_eval.models as models
for info in pkgutil.iter_modules(models.__path__):
    importlib.import_module("minimonkey_eval.models." + info.name)
from PIL import Image
from minimonkey_eval.models import Engine, Tiling
engine = Engine.from_pretrained({str(tiny_checkpoint)!r}, dtype="fp32", device="cpu")
out = engine.generate([([Image.new("RGB", (300, 200), "white")], "Hi?")], tiling=Tiling.msac(1, 2, 1, 2),
                      max_new_tokens=2, batch_size="auto")
print(len(out), "vlmeval" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["1", "False"]
