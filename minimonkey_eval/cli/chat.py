"""``minimonkey-eval chat``: answer one question about one or more images with the engine."""
from __future__ import annotations

from pathlib import Path

from minimonkey_eval.cli.args import CliError, add_engine_args, add_scm_args, label, positive_int, tiling_arg
from minimonkey_eval.models.registry import PAIR_BASE
from minimonkey_eval.models.settings import DYNAMIC, Tiling, parse, scm_config


def add_parser(sub) -> None:
    p = sub.add_parser("chat", help="answer one question about one or more images")
    p.add_argument("--model-path", required=True, type=Path)
    p.add_argument("--image", action="append", default=[], help="image file (repeat for several images)")
    p.add_argument("--question", required=True)
    p.add_argument("--baseline-tiling", action="store_true",
                   help=f"{label(PAIR_BASE)} dynamic tiling instead of MSAC")
    p.add_argument("--tiles", default=None, type=tiling_arg,
                   help="msac 'MIN-MAX/MIN2-MAX2' (default 4-12/3-7) or dynamic 'MIN-MAX' "
                        "(default 1-6 with --baseline-tiling)")
    p.add_argument("--max-new-tokens", type=positive_int, default=512)
    add_engine_args(p)
    add_scm_args(p)
    p.set_defaults(handler=run)


def chat_tiling(text: str | None, baseline: bool):
    """``chat --tiles``: '4-12/3-7' -> MSAC, '1-6' -> dynamic (``settings.parse``); default 4-12/3-7, or 1-6 with
    ``--baseline-tiling`` (which takes only a dynamic 'MIN-MAX')."""
    if text is None:
        return Tiling.dynamic(6) if baseline else Tiling.msac()
    try:
        tiling = parse(text)
    except ValueError as exc:
        raise CliError(f"--tiles: {exc}") from None
    if baseline and tiling.kind != DYNAMIC:
        raise CliError(f"--tiles {text!r}: --baseline-tiling takes a dynamic 'MIN-MAX'")
    return tiling


def run(args) -> int:
    from minimonkey_eval.errors import require_checkpoint_dir

    require_checkpoint_dir(args.model_path)            # a mistyped path fails before torch is imported
    tiling = chat_tiling(args.tiles, args.baseline_tiling)
    try:
        scm = scm_config(args.scm, args.scm_ratio, args.scm_fix_off_by_one)
    except ValueError as exc:
        raise CliError(f"--scm-ratio: {exc}") from None
    from minimonkey_eval.datasets.validate import check_image_file

    for image in args.image:
        check_image_file(image, error=CliError, probe=True)
    from minimonkey_eval.models import Engine  # lazy: torch and transformers

    engine = Engine.from_pretrained(args.model_path, dtype=args.dtype, device=args.device,
                                    attn_implementation=args.attn)
    engine.normalize_on_device = args.normalize_on_device
    answer = engine.chat(args.image, args.question, tiling=tiling, max_new_tokens=args.max_new_tokens, scm=scm)
    print(answer)
    return 0
