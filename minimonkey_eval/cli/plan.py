"""``minimonkey-eval plan``: what a run over the benchmarks will cost, with and without computing each image once
(``eval/plan.py`` counts; reads the TSVs and the checkpoint's config and tokenizer, never its weights)."""
from __future__ import annotations

import argparse
from pathlib import Path

from minimonkey_eval.cli.args import CliError, tiles_arg
from minimonkey_eval.eval.plan import DEFAULT_TFLOPS
from minimonkey_eval.models.registry import MINIMONKEY, MODELS, PAIR_NEW, get_model


def tflops_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of TFLOP/s, got {text!r}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="samples, unique images, tokens, ViT passes and time per benchmark, with and "
                                    "without reuse (no weights loaded)",
                       description="Per benchmark and in total: samples, unique images, visual tokens, prefill "
                                   "tokens and ViT tile passes one sample at a time and with each image computed "
                                   "once, and the time they take at --tflops. Reads the TSVs (image headers only) "
                                   "and the checkpoint's config.json and tokenizer; no weights are loaded.")
    p.add_argument("--model-path", required=True, type=Path, help="original-format checkpoint folder (its config)")
    p.add_argument("--model", default=PAIR_NEW, choices=list(MODELS),
                   help=f"whose tile table and prompts (default {PAIR_NEW})")
    p.add_argument("--data", default="all", help="'all' (the registry's 16 datasets) or a comma-separated list")
    p.add_argument("--data-root", type=Path, default=None, help="folder of <NAME>.tsv files (default: $LMUData)")
    p.add_argument("--tiles", default=None, type=tiles_arg,
                   help="tile profile (vlmevalkit [default], monkey-repo) or MIN-MAX/MIN2-MAX2 (MSAC) | MIN-MAX")
    p.add_argument("--tflops", type=tflops_arg, default=DEFAULT_TFLOPS,
                   help=f"sustained TFLOP/s of the device for the time estimate (default {DEFAULT_TFLOPS:g}: ~40%% "
                        "of an H100/H200's dense bf16 peak)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from minimonkey_eval.datasets.local import default_data_root
    from minimonkey_eval.eval.backends.engine_backend import split_tiles_option
    from minimonkey_eval.eval.plan import format_plan, plan_datasets
    from minimonkey_eval.eval.run.options import parse_datasets
    from minimonkey_eval.models.tile_profiles import get_profile

    datasets = parse_datasets(args.data, allow_all=True)
    data_root = (args.data_root or default_data_root()).expanduser()
    if not data_root.is_dir():
        raise CliError(f"--data-root {data_root}: not a folder")
    profile, _ = split_tiles_option(args.tiles)
    spec = get_model(args.model)
    try:
        get_profile(MINIMONKEY if spec.msac_native else spec.family, profile)
    except ValueError as exc:
        raise CliError(f"--tiles: {exc}") from None
    plan = plan_datasets(args.model_path, datasets, data_root, model=args.model, tiles=args.tiles,
                         tflops=args.tflops)
    if not plan.total.samples:
        raise CliError(f"no samples: none of {', '.join(datasets)} has a readable TSV under {data_root}")
    print(format_plan(plan))
    return 0
