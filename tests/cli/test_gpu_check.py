"""``scripts/gpu_check.sh --device cpu --tiny`` runs every step on CPU (CUDA tests reported as skipped) and writes
the JSON + markdown table with every fast-mode answer (with and without reuse) equal to the reference mode's (a few
minutes on 2 cores)."""
from __future__ import annotations

import json
import subprocess

import pytest
from helpers.runner_utils import REPO, cli_env


@pytest.mark.slow
@pytest.mark.timeout(1560)  # above its own 1500 s subprocess limit (pyproject's default is 600 s)
def test_gpu_check_cpu_tiny(tmp_path):
    out = tmp_path / "gpu_check"
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--device", "cpu", "--tiny", "--out",
                             str(out)], env=cli_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert [r["workload"] for r in summary["reports"]] == ["docvqa", "ocrbench", "mme", "pope"]
    assert summary["tiny"] is True and summary["cuda_tests"] == "skipped (--device cpu)"
    for report in summary["reports"]:
        reference, plain, fast = report["rows"]
        assert (reference["mode"], plain["mode"], fast["mode"]) == ("reference", "fast-no-reuse", "fast")
        assert fast["samples"] == plain["samples"] == reference["samples"] == 2
        assert fast["outputs_match"] == plain["outputs_match"] == "2/2"
    table = (out / "gpu_check.md").read_text()
    assert table.count("| fast |") == 4 and table.count("| reference |") == 4 and table.count("| fast-no-reuse |") == 4
    assert "gpu_check: OK" in result.stdout
