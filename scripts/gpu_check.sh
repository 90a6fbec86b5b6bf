#!/usr/bin/env bash
# GPU acceptance check, to run right after the README install on one H100/H200 (sized for < 8 minutes):
#   1. the CUDA-only tests (tests/models/test_cuda.py): --normalize-on-device bit-equal to torchvision's CPU
#      normalisation (decides whether the flag may become the CUDA default), flash-attn answers == SDPA's;
#   2. a random checkpoint in the original format: real shapes (InternViT-300M + InternLM2-1.8B, bf16), or the
#      tiny one with --tiny;
#   3. `minimonkey-eval bench` (run's own path: VLMEvalKit-style reference, fast without and with reuse) on docvqa,
#      ocrbench, mme, pope;
#   4. results/gpu_check/gpu_check.json + gpu_check.md (one table, with the date and the device).
# Fails (exit 1) if a CUDA test fails or a fast-mode answer differs from the reference mode's.
#
#   scripts/gpu_check.sh                      # on the GPU box
#   scripts/gpu_check.sh --device cpu --tiny  # the same steps on CPU with the tiny checkpoint (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
TINY=0
OUT=results/gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "error: unknown option $1 (use --device cuda|cpu, --tiny, --out DIR)" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MINIMONKEY_NO_PROGRESS=1
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)

echo "== 1/4 CUDA-only tests"
if [ "$DEVICE" = cpu ]; then
  echo "skipped (--device cpu)" | tee "$OUT/cuda_tests.txt"
else
  "$PY" -m pytest -q -rs tests/models/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "CUDA tests failed (see $OUT/cuda_tests.txt)" >&2; exit 1; }
fi

echo "== 2/4 checkpoint"
if [ "$TINY" = 1 ]; then
  "$PY" -m minimonkey_eval.cli make-fixtures --out "$WORK/fx" --no-data
  BENCH=(--warmup 0 --max-new-tokens 4 --tiles 1-2/1-2)   # CI smoke run: small tiles keep prompts ~1k tokens
  SAMPLES_DOC=2; SAMPLES_OTHER=2
else
  "$PY" -m minimonkey_eval.cli make-fixtures --out "$WORK/fx" --no-data --real-shapes
  BENCH=(--warmup 2 --dtype bf16)   # each workload's realistic answer length (8 or 2 new tokens)
  SAMPLES_DOC=24; SAMPLES_OTHER=48
fi

echo "== 3/4 bench (one process, the checkpoint loaded once)"
"$PY" -m minimonkey_eval.cli bench --model-path "$WORK/fx/checkpoint" --device "$DEVICE" \
  --workload docvqa,ocrbench,mme,pope --samples "$SAMPLES_DOC,$SAMPLES_OTHER,$SAMPLES_OTHER,$SAMPLES_OTHER" \
  "${BENCH[@]}" --out "$OUT/bench"

echo "== 4/4 table"
"$PY" - "$OUT" "$DEVICE" "$TINY" "$START" <<'PYEOF'
import glob, json, os, sys, time
from minimonkey_eval.eval.bench import format_markdown
out, device, tiny, start = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
reports = []
for workload in ("docvqa", "ocrbench", "mme", "pope"):
    files = sorted(glob.glob(os.path.join(out, "bench", f"bench_{workload}_*.json")), key=os.path.getmtime)
    reports.append(json.load(open(files[-1])))
tests = open(os.path.join(out, "cuda_tests.txt")).read().strip().splitlines()
summary = {"date": time.strftime("%Y-%m-%d"), "device": reports[0]["device"], "tiny": tiny,
           "cuda_tests": tests[-1] if tests else "", "seconds": round(time.time() - start),
           "reports": [{k: r[k] for k in ("workload", "dtype", "tiling", "max_new_tokens", "rows")} for r in reports]}
json.dump(summary, open(os.path.join(out, "gpu_check.json"), "w"), indent=2, default=str)
text = (f"# GPU check {summary['date']} on {summary['device']} ({'tiny' if tiny else 'real-shape'} random checkpoint, "
        f"{reports[0]['dtype']})\n\nCUDA tests: {summary['cuda_tests']}\n\n{format_markdown(reports)}\n")
open(os.path.join(out, "gpu_check.md"), "w").write(text)
print(text)
bad = [f"{r['workload']} ({row['mode']})" for r in reports for row in r["rows"] if row["mode"] != "reference"
       and row["outputs_match"] != f"{row['samples']}/{row['samples']}"]
if bad:
    sys.exit(f"fast-mode answers differ from the reference on: {', '.join(bad)}")
print(f"gpu_check: OK in {summary['seconds']} s -> {out}/gpu_check.md")
PYEOF
