"""The console every command shares: one logging setup (``-q`` / ``-v`` / ``-vv``) and the quieting of VLMEvalKit.

``setup_logging(verbosity)`` is the only place the CLI configures logging: -1 (``-q``) errors only, 0 our warnings,
1 (``-v``) our info lines, 2 (``-vv``) debug, and from there on the libraries' own chatter too.

VLMEvalKit talks on its own: importing it logs ``ERROR root: Did not detect the .env file ...`` (its ``load_env``;
the file only holds API keys, which an offline run does not use), each offline MCQ scoring logs "Exact Matching
mode, will not do GPT-based answer matching" (the run record and the score sheets already say which extraction
scored a dataset), and its metric loops draw bare tqdm bars between ours. The context managers here silence exactly
those, for the duration of the call that causes them, and restore what they changed; under ``-vv`` they let
everything through.
"""
from __future__ import annotations

import contextlib
import logging
import sys

LEVELS = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
VLMEVAL_LOGGER = "vlmeval"      # vlmeval.smp.log's ROOT_LOGGER_NAME: the parent of every vlmeval module logger


def level_for(verbosity: int) -> int:
    """The logging level of a verbosity (-1 quiet ... 2 debug; values beyond are clamped)."""
    return LEVELS[max(min(LEVELS), min(max(LEVELS), verbosity))]


def setup_logging(verbosity: int = 0) -> int:
    """Configure the root logger for a command (stderr, one line per record); returns the level set.

    When the process has no logging handler yet (a command-line run) one stderr handler is installed at the level;
    in-process callers that configured logging themselves (pytest's log capture, an application) keep theirs."""
    level = level_for(verbosity)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    return level


def library_noise_shown() -> bool:
    """``-vv``: the libraries' own log lines and bars are shown as they come."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


class _VlmevalEnvNotice(logging.Filter):
    """Drops the one record vlmeval's ``load_env`` logs on the root logger when no ``.env`` file exists."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.funcName == "load_env" and "vlmeval" in record.pathname.replace("\\", "/").split("/")
                    and str(record.msg).startswith("Did not detect the .env file"))


@contextlib.contextmanager
def quiet_vlmeval_import():
    """Around the first ``import vlmeval``: no '.env' ERROR line, and no root handler left behind by the
    ``logging.basicConfig`` call in vlmeval's ``load_env`` (the process's logging stays as it was)."""
    if library_noise_shown():
        yield
        return
    root = logging.getLogger()
    handlers = list(root.handlers)
    notice = _VlmevalEnvNotice()
    root.addFilter(notice)
    try:
        yield
    finally:
        root.removeFilter(notice)
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)


@contextlib.contextmanager
def quiet_logger(name: str = VLMEVAL_LOGGER, level: int = logging.ERROR):
    """Raise logger ``name`` (and so its children) to ``level`` for the duration; restored after."""
    if library_noise_shown():
        yield
        return
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(max(level, previous))
    try:
        yield
    finally:
        logger.setLevel(previous)


def _disable_index() -> int:
    """Position of ``disable`` among tqdm's positional arguments (after ``self``), read from its signature."""
    import inspect

    from tqdm import std

    names = [p for p in inspect.signature(std.tqdm.__init__).parameters if p != "self"]
    return names.index("disable")


@contextlib.contextmanager
def no_library_bars():
    """Every tqdm bar created inside is disabled (vlmeval's metric loops draw bare ``0/3 it/s`` bars).

    tqdm reads its ``TQDM_DISABLE`` environment variable only when tqdm is imported, so the class's ``__init__`` is
    wrapped for the duration instead (and put back, descriptor and all). It applies to bars any thread creates
    meanwhile: use it around calls that run alone (scoring runs after inference, on one thread)."""
    if library_noise_shown():
        yield
        return
    from tqdm import std  # lazy: tqdm is only needed by the commands that score

    cls = std.tqdm
    original = cls.__dict__["__init__"]
    bound_init = cls.__init__
    position = _disable_index()

    def init(self, *args, **kwargs):
        if len(args) > position:
            args = args[:position] + (True,) + args[position + 1:]
        else:
            kwargs["disable"] = True
        bound_init(self, *args, **kwargs)

    cls.__init__ = init
    try:
        yield
    finally:
        cls.__init__ = original
