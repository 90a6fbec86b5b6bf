"""``minimonkey-eval sweep``: score against cost over a grid of tile budgets x SCM ratios (resumable per point)."""
from __future__ import annotations

import sys
from pathlib import Path

from minimonkey_eval.cli.args import (
    BATCH_SIZE_DEFAULT,
    add_engine_options,
    add_reuse_arg,
    add_tracker_args,
    batch_size_arg,
    positive_int,
    scm_list,
    tiles_list,
    tracker_options,
)
from minimonkey_eval.eval.backends.engine_backend import DEFAULT_TILE_PROFILE
from minimonkey_eval.models.registry import MODELS


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="score against cost over a grid of tiles x SCM ratios (resumable per point)")
    p.add_argument("--model", required=True, choices=list(MODELS))
    p.add_argument("--model-path", type=Path, default=None, help="original-format checkpoint folder")
    p.add_argument("--data", required=True, help="comma-separated datasets, e.g. OCRBench,DocVQA_VAL,MME")
    p.add_argument("--tiles", default=DEFAULT_TILE_PROFILE, type=tiles_list,
                   help="comma-separated tile profiles or MIN-MAX[/MIN2-MAX2] budgets (default vlmevalkit)")
    p.add_argument("--scm", default="off", type=scm_list,
                   help="comma-separated SCM settings: off or a kept ratio (default off)")
    p.add_argument("--out", type=Path, default=Path("results/sweep"), help="sweep folder (default results/sweep)")
    p.add_argument("--data-root", type=Path, default=None, help="folder of <NAME>.tsv files (default: $LMUData)")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N rows of each dataset")
    p.add_argument("--max-new-tokens", type=positive_int, default=None, help="default: the tile profile's")
    p.add_argument("--batch-size", type=batch_size_arg, default=None, help=f"N or 'auto' ({BATCH_SIZE_DEFAULT})")
    p.add_argument("--judge", default=None, help="VLMEvalKit judge model (default: offline scoring)")
    add_reuse_arg(p)
    add_engine_options(p)
    add_tracker_args(p, mlflow_default="OUT/mlruns")
    p.set_defaults(handler=run)


def run(args) -> int:
    from minimonkey_eval.eval.sweep.grid import sweep  # lazy: the runner (torch, vlmeval)

    batch = args.batch_size
    result = sweep(args.model, args.data, args.tiles, args.scm, out=args.out,
                   model_path=str(args.model_path) if args.model_path else None,
                   data_root=str(args.data_root) if args.data_root else None, limit=args.limit,
                   max_new_tokens=args.max_new_tokens, batch_size=batch, dtype=args.dtype, device=args.device,
                   attn=args.attn, judge=args.judge, argv=list(sys.argv), progress=args.progress,
                   reuse=args.reuse)
    print(f"sweep: {len(result.computed)} point(s) computed, {len(result.skipped)} already done")
    print(f"table: {result.csv}")
    print(f"page:  {result.markdown}")
    trackers = tracker_options(args)
    if trackers.log_to:
        from minimonkey_eval.eval.trackers.log import log_sweep  # lazy: wandb / mlflow (optional extras)

        for line in log_sweep(trackers, args.out):
            print(line)
    return 0
