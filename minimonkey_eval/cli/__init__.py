"""Command line: ``minimonkey-eval {make-fixtures,doctor,chat,run,run-all,demo,report,compare,bench,plan,sweep}``.

One module per command; each has ``add_parser(sub)``, which registers its sub-parser with
``set_defaults(handler=...)``, and the handler, which takes the parsed arguments and returns the exit code.
``args.py`` holds the options several commands share. Start-up stays light: a handler imports torch, vlmeval,
pandas or matplotlib inside itself, only when it runs (the one reason for a function-level import in this package).
Expected failures (bad checkpoint, missing data, bad arguments, a full disk) print one ``error:`` line and exit 2.
``-q`` / ``-v`` / ``--no-progress`` go before or after the command (``args.py``); logging is set up once, here,
through ``console.setup_logging``.

May import every other part of the package; nothing imports ``cli``.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

from minimonkey_eval.cli import bench, chat, compare, demo, doctor, fixtures, plan, report, run, sweep
from minimonkey_eval.cli.args import EXIT_USAGE, OneLineParser, add_console_args, verbosity
from minimonkey_eval.console import setup_logging
from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.run.distributed import DistContext

# In the order ``--help`` lists them.
COMMAND_MODULES = (fixtures, doctor, chat, run, demo, bench, plan, compare, sweep, report)
# Filesystem failures a user fixes (disk full, file too big, quota, read-only, permission): one line, exit 2.
_FS_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR,
              errno.ENOTDIR}

# A path the filesystem refuses by its name: too long, or a symlink loop.
_NAME_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP}


def _shown(name) -> str:
    """A file name as one printable line: undecodable bytes as \\xNN, long names shortened in the middle."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "backslashreplace")
    text = "?" if name is None else str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if len(text) <= 160 else f"{text[:70]}...{text[-70:]} ({len(text)} characters)"


def _offending(exc: UnicodeError) -> str:
    """The few characters around the undecodable part of a UnicodeError's text, on one line."""
    text, start, end = getattr(exc, "object", ""), getattr(exc, "start", 0), getattr(exc, "end", 0)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    window = str(text)[max(0, start - 30):end + 30]
    return " ".join(window.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").split())


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="minimonkey-eval", description=__doc__.splitlines()[0])
    add_console_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in COMMAND_MODULES:
        module.add_parser(sub)
    for command in {id(p): p for p in sub.choices.values()}.values():   # -q/-v/--no-progress after the command too
        add_console_args(command, default=argparse.SUPPRESS)
    return parser


def _say(message: str) -> None:
    """Print one line to stderr (a line break inside a message, e.g. from a data cell, is shown escaped); under
    torchrun every rank fails alike, so only rank 0 says it."""
    if DistContext.env_rank() == 0:
        print(message.replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    # Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a shared or oversubscribed CPU
    # (CI, several torchrun ranks) spinning made CPU runs 3-4x slower; on an idle CPU it makes no difference.
    # An explicit OMP_WAIT_POLICY wins; no effect once torch is imported (in-process callers).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    level = verbosity(args)
    setup_logging(level)
    if level < 0 and args.progress is None:
        args.progress = False          # -q: no bars either
    try:
        return args.handler(args)
    except UserFacingError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        if exc.errno in _NAME_ERRNOS:
            _say(f"error: {_shown(exc.filename)}: {exc.strerror or exc}; use a shorter path (each name at most 255 "
                 "bytes) without symlink loops")
            return EXIT_USAGE
        if exc.errno not in _FS_ERRNOS:
            raise
        if exc.errno == errno.EFBIG and exc.filename is None:
            _say("error: a file this command writes grew over the process's file-size limit (`ulimit -f`); raise "
                 "the limit, then rerun (finished predictions are kept)")
            return EXIT_USAGE
        _say(f"error: {_shown(exc.filename)}: {exc.strerror or exc} (disk full, read-only or not allowed); "
             "finished predictions are kept: free space or fix the folder, then rerun")
        return EXIT_USAGE
    except UnicodeError as exc:
        _say(f"error: a path or value is not valid UTF-8 (near \"{_offending(exc)}\"); rename the file or folder "
             "with UTF-8 characters")
        return EXIT_USAGE
    except MemoryError:
        _say("error: out of memory (this process's memory limit, `ulimit -v` or the machine's RAM); free memory "
             "or raise the limit, then rerun (finished predictions are kept)")
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: finished predictions are saved; rerun the same command to resume", file=sys.stderr)
        _exit_now_if_staging(130)
        return 130


def _exit_now_if_staging(code: int) -> None:
    """After Ctrl-C the interpreter would wait for the pipeline's staging threads to finish their batch (or forever
    on a blocked read). Predictions are fsync'd per batch, so while such a thread still runs we exit at once."""
    import threading

    pipeline = sys.modules.get("minimonkey_eval.models.pipeline")   # not imported: no staging thread ever ran
    if (pipeline is not None and pipeline.staging_threads_alive()
            and threading.current_thread() is threading.main_thread()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
