"""Command line: ``minimonkey-eval {make-fixtures,chat,run,run-all,demo,report,bench}``.

Start-up stays light: torch/transformers/vlmeval are imported inside the sub-commands that need them.
Expected failures (bad checkpoint, missing data, bad arguments) print one ``error:`` line and exit 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EXIT_USAGE = 2


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", default=None, help="bf16 | fp16 | fp32 (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--device", default=None, help="cuda | cpu | cuda:N (default: cuda if available)")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"],
                   help="attention kernel (default: PyTorch SDPA; flash_attention_2 if flash-attn is installed)")


def _add_scm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scm", action="store_true", help="enable SCM (scale compression); off in VLMEvalKit's wrapper")
    p.add_argument("--scm-ratio", type=float, default=0.5, help="fraction of first-scale tokens SCM keeps")
    p.add_argument("--scm-fix-off-by-one", action="store_true",
                   help="keep the token right after the first-scale block that the official SCM drops")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minimonkey-eval", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-fixtures", help="write a tiny original-format checkpoint and sample benchmark TSVs")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--real-shapes", action="store_true", help="InternVL2-2B-sized random weights (GPU speed runs)")
    p.add_argument("--shards", type=int, default=1, help="write sharded safetensors + index")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-data", action="store_true", help="only the checkpoint, no LMUData TSVs")

    p = sub.add_parser("chat", help="answer one question about one or more images")
    p.add_argument("--model-path", required=True, type=Path)
    p.add_argument("--image", action="append", default=[], help="image file (repeat for several images)")
    p.add_argument("--question", required=True)
    p.add_argument("--baseline-tiling", action="store_true", help="InternVL2-2B dynamic tiling instead of MSAC")
    p.add_argument("--tiles", default=None, help="msac 'MIN-MAX/MIN2-MAX2' (default 4-12/3-7) or dynamic 'MIN-MAX' "
                                                 "(default 1-6 with --baseline-tiling)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    _add_engine_args(p)
    _add_scm_args(p)
    return parser


def parse_tiles(text: str | None, baseline: bool):
    """'4-12/3-7' -> MSAC tiling, '1-6' -> dynamic tiling."""
    from .models.engine import Tiling

    if text is None:
        return Tiling.dynamic(6) if baseline else Tiling.msac()
    try:
        parts = [tuple(int(x) for x in part.split("-")) for part in text.split("/")]
        if len(parts) == 2 and all(len(p) == 2 for p in parts) and not baseline:
            return Tiling.msac(parts[0][0], parts[0][1], parts[1][0], parts[1][1])
        if len(parts) == 1 and len(parts[0]) == 2:
            return Tiling.dynamic(max_num=parts[0][1], min_num=parts[0][0])
    except ValueError:
        pass
    raise UserError(f"--tiles {text!r}: expected MIN-MAX/MIN2-MAX2 (MSAC) or MIN-MAX (dynamic)")


def cmd_make_fixtures(args) -> int:
    from .models.tiny_checkpoint import write_checkpoint

    ckpt = write_checkpoint(args.out / "checkpoint", real_shapes=args.real_shapes, seed=args.seed, shards=args.shards)
    print(f"checkpoint: {ckpt}")
    if not args.no_data:
        from .datasets.fixtures import write_sample_tsvs

        written = write_sample_tsvs(args.out / "LMUData", seed=args.seed)
        print(f"LMUData: {args.out / 'LMUData'} ({len(written)} TSVs)")
    return 0


def cmd_chat(args) -> int:
    from .models import Engine

    tiling = parse_tiles(args.tiles, args.baseline_tiling)
    for image in args.image:
        if not Path(image).is_file():
            raise UserError(f"{image}: image file not found")
    engine = Engine.from_pretrained(args.model_path, dtype=args.dtype, device=args.device, attn_implementation=args.attn)
    answer = engine.chat(args.image, args.question, tiling=tiling, max_new_tokens=args.max_new_tokens, scm=args.scm,
                         scm_ratio=args.scm_ratio, scm_fix_off_by_one=args.scm_fix_off_by_one)
    print(answer)
    return 0


COMMANDS = {"make-fixtures": cmd_make_fixtures, "chat": cmd_chat}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from .errors import UserFacingError

    try:
        return COMMANDS[args.command](args)
    except (UserFacingError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: finished predictions are saved; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
