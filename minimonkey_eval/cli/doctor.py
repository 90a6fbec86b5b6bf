"""``minimonkey-eval doctor``: the pre-flight check before a long run, in seconds, as one table.

Environment (``preflight.check_environment``), each TSV of ``--data`` under ``--data-root`` / ``$LMUData``
(``datasets.preflight.check_tsv``) and, with ``--model-path``, the checkpoint as the loader checks it without reading
a weight (``models.checkpoint.check_checkpoint``; ``--load`` also loads it). Exit 1 when a row says FAIL (what
would stop a run), else 0: a TSV that is not VLMEvalKit's file is a named warning, not a failure.
"""
from __future__ import annotations

import os
from pathlib import Path

from minimonkey_eval.cli.args import add_engine_options, count
from minimonkey_eval.preflight import FAIL, OK, WARN, Check
from minimonkey_eval.process_state import LMUDATA_ENV

EXIT_PROBLEM = 1
DEFAULT_SAMPLE = 8      # image cells decoded per TSV (datasets.preflight's default)


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="pre-flight check: versions, GPU, TSVs (rows, images, md5) and a checkpoint")
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder of <NAME>.tsv files to check (default: $LMUData; no data check without either)")
    p.add_argument("--data", default="all", help="'all' (the 16 datasets) or a comma-separated list (default all)")
    p.add_argument("--model-path", type=Path, default=None,
                   help="original-format checkpoint folder: config fields, shards, tokenizer, tensor shapes "
                        "(no weight is read)")
    p.add_argument("--sample", type=count, default=DEFAULT_SAMPLE, metavar="N",
                   help=f"image cells decoded per TSV (default {DEFAULT_SAMPLE}, evenly spread; 0 = all)")
    p.add_argument("--load", action="store_true", help="also load the checkpoint's weights onto --device")
    p.add_argument("--no-env", dest="env", action="store_false", help="skip the environment rows")
    add_engine_options(p, attn_help="attention kernel the checkpoint check configures (default sdpa)")
    p.set_defaults(handler=command)


def data_root_of(args) -> Path | None:
    if args.data_root is not None:
        return args.data_root.expanduser()
    env = os.environ.get(LMUDATA_ENV)
    return Path(env).expanduser() if env else None


def data_checks(root: Path | None, data: str, sample: int) -> list[Check]:
    from minimonkey_eval.datasets.preflight import check_tsv
    from minimonkey_eval.eval.run.options import parse_datasets

    names = parse_datasets(data, allow_all=True)
    if root is None:
        return [Check("data", "data-root", WARN, "no --data-root and no $LMUData: the TSVs were not checked")]
    if not root.is_dir():
        return [Check("data", "data-root", FAIL, f"{root}: not a folder; pass --data-root DIR holding the <NAME>.tsv "
                                                 "files (or set $LMUData)")]
    return [check_tsv(name, root, sample) for name in names]


def checkpoint_checks(path: Path, args) -> list[Check]:
    from minimonkey_eval.errors import CheckpointError
    from minimonkey_eval.models.checkpoint import check_checkpoint

    try:
        s = check_checkpoint(path, args.attn)
    except CheckpointError as exc:
        return [Check("checkpoint", path.name or str(path), FAIL, str(exc))]
    rows = [Check("checkpoint", path.name or str(path), OK,
                  f"{s['arch']} ({s['template']}), {s['parameters'] / 1e6:.1f} M parameters in {s['tensors']} tensors "
                  f"/ {s['shards']} file(s), tokenizer {s['tokenizer']} tokens (vocab {s['vocab']}); no weight read")]
    if args.load:
        from minimonkey_eval.models import Engine  # lazy: torch, transformers

        engine = Engine.from_pretrained(path, dtype=args.dtype, device=args.device, attn_implementation=args.attn)
        rows.append(Check("checkpoint", "load", OK, f"weights loaded on {engine.device} as {engine.dtype}"))
    return rows


def render(checks: list[Check]) -> str:
    """The table: one line per check, columns aligned."""
    header = ("AREA", "CHECK", "STATUS", "DETAIL")
    rows = [header] + [(c.area, c.item, c.status, c.detail) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)


def command(args) -> int:
    from minimonkey_eval.preflight import check_environment

    checks = check_environment() if args.env else []
    checks += data_checks(data_root_of(args), args.data, args.sample)
    if args.model_path is not None:
        checks += checkpoint_checks(args.model_path.expanduser(), args)
    print(render(checks))
    failed = [c for c in checks if c.stops_a_run]
    warned = sum(c.status == WARN for c in checks)
    if failed:
        print(f"doctor: {len(failed)} problem(s) would stop a run, {warned} warning(s)")
        return EXIT_PROBLEM
    print(f"doctor: nothing would stop a run ({warned} warning(s))")
    return 0
