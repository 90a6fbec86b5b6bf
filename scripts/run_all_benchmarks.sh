#!/usr/bin/env bash
# Run every benchmark of the paper table for one model, data parallel under torchrun, then build the report.
#
#   NPROC=8 scripts/run_all_benchmarks.sh --model MiniMonkey --model-path /ckpt/Mini-Monkey [--data all] [...]
#   scripts/run_all_benchmarks.sh --nnodes 2 --node-rank 0 --rdzv-endpoint host0:29500 -- --model InternVL2-2B ...
#
# Arguments before a literal `--` go to torchrun (multi-node: --nnodes, --node-rank, --rdzv-*, --master-*);
# everything else goes to `minimonkey-eval run-all` (see `python -m minimonkey_eval.cli run-all --help`).
# NPROC: processes per node (default: the number of visible GPUs, else 1). Each rank takes rows i % WORLD_SIZE,
# appends to its own predictions part file; rank 0 merges, scores once and writes the sheets and the report.
# Rerunning the same command resumes: finished samples are never inferred again.
set -euo pipefail

torchrun_args=()
run_args=("$@")
for ((i = 1; i <= $#; i++)); do
  if [[ "${!i}" == "--" ]]; then
    torchrun_args=("${@:1:i-1}")
    run_args=("${@:i+1}")
    break
  fi
done

if [[ -z "${NPROC:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); then
    NPROC=$(( NGPU > 0 ? NGPU : 1 ))
  else
    NPROC=1
  fi
fi

PYTHON=${PYTHON:-python}
if command -v torchrun >/dev/null 2>&1 && [[ "$PYTHON" == "python" ]]; then
  launcher=(torchrun)
else
  launcher=("$PYTHON" -m torch.distributed.run)
fi
if [[ ${#torchrun_args[@]} -eq 0 ]]; then
  torchrun_args=(--standalone)   # single node: a free local port, no rendezvous setup
fi

set -x
exec "${launcher[@]}" "${torchrun_args[@]}" --nproc-per-node "${NPROC}" \
  -m minimonkey_eval.cli run-all "${run_args[@]}"
