#!/usr/bin/env python
"""Thin wrapper around ``minimonkey-eval bench`` (same options), for machines where the package is not installed.

    python scripts/bench_throughput.py --real-shapes --workload docvqa --samples 64
    python scripts/bench_throughput.py --model-path /tmp/fxb/checkpoint --workload ocrbench --samples 4
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minimonkey_eval.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
