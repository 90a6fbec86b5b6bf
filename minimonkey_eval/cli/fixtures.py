"""``minimonkey-eval make-fixtures``: a tiny (or real-shape) random checkpoint in the original format + sample TSVs."""
from __future__ import annotations

from pathlib import Path

from minimonkey_eval.cli.args import CliError, count, label, positive_int
from minimonkey_eval.models.registry import MODELS, PAIR_BASE, fixture_models, get_model


def add_parser(sub) -> None:
    p = sub.add_parser("make-fixtures", help="write a tiny original-format checkpoint and sample benchmark TSVs")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--real-shapes", action="store_true",
                   help=f"{label(PAIR_BASE)}-sized random weights (GPU speed runs)")
    p.add_argument("--shards", type=positive_int, default=1, help="write sharded safetensors + index")
    p.add_argument("--seed", type=count, default=0)
    p.add_argument("--no-data", action="store_true", help="only the checkpoint, no LMUData TSVs")
    p.add_argument("--family", default=None, choices=["1b", "2b", "4b", "all"],
                   help="Mini-InternVL2 family member(s) (1b Qwen2, 2b InternLM2, 4b Phi-3) into "
                        "OUT/<member>/checkpoint (default: 2b into OUT/checkpoint)")
    p.add_argument("--model", default=None, choices=list(MODELS),
                   help="write the fixture member whose LLM this registered model has into OUT/checkpoint")
    p.set_defaults(handler=run)


def run(args) -> int:
    # lazy: the checkpoint writer imports torch and tokenizers
    from minimonkey_eval.models.tiny_checkpoint import write_checkpoint, write_family

    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out}: exists and is not a folder; pass a folder (it is created if missing)")
    if args.family:
        family = fixture_models()
        for key, ckpt in write_family(args.out, args.family, real_shapes=args.real_shapes, seed=args.seed,
                                      shards=args.shards).items():
            print(f"checkpoint ({family[key]}): {ckpt}")
    else:
        member = get_model(args.model).fixture if args.model else "2b"
        ckpt = write_checkpoint(args.out / "checkpoint", family=member, real_shapes=args.real_shapes, seed=args.seed,
                                shards=args.shards)
        print(f"checkpoint: {ckpt}")
    if not args.no_data:
        from minimonkey_eval.datasets.fixtures import write_sample_tsvs

        written = write_sample_tsvs(args.out / "LMUData", seed=args.seed)
        print(f"LMUData: {args.out / 'LMUData'} ({len(written)} TSVs)")
    return 0
