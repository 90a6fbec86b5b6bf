"""Checkpoint identity: one sha256 that changes whenever any byte the loader reads changes.

The identity covers the config, the shard index, every tokenizer file and the *full content* of every
weight file (``*.safetensors``; ``*.bin`` / ``*.pt`` for VLMEvalKit wrappers) in the checkpoint folder (a
same-shape weight swap changes it). Hashing several GB of weights
takes seconds, so each file's content hash is cached against a fast key of its metadata — resolved path, device,
inode, size, ``mtime_ns`` and ``ctime_ns`` (the kernel sets ctime on every write or rename; no tool can set it back,
so ``cp -p`` / ``rsync -t`` over a shard still invalidates the entry). Cache entries live under
``$MINIMONKEY_EVAL_CACHE`` (default ``$XDG_CACHE_HOME/minimonkey-eval`` or ``~/.cache/minimonkey-eval``) as one
small JSON file per key, written atomically; an unreadable or malformed entry, or a cache folder that cannot be
written, only costs a rehash.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from minimonkey_eval.errors import CheckpointError

# Every file of an original-format checkpoint besides the weights that the loader reads (config, shard index,
# tokenizers of the three LLM families and their side files, generation defaults).
SIDE_FILES = ("config.json", "model.safetensors.index.json", "tokenizer.model", "tokenizer.json", "vocab.json",
              "merges.txt", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json",
              "generation_config.json")
# Weight files: safetensors (what our loader reads) and the pickle formats a VLMEvalKit wrapper may load.
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")
CACHE_ENV = "MINIMONKEY_EVAL_CACHE"
_CHUNK = 8 << 20


def cache_dir() -> Path:
    """Where content hashes are cached (``$MINIMONKEY_EVAL_CACHE``, else the XDG cache folder)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minimonkey-eval"


def _fast_key(file: Path) -> str:
    """Metadata that changes whenever the file's content can have changed (see the module docstring)."""
    st = os.stat(file)
    return (f"{os.path.realpath(file)}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|"
            f"{st.st_ctime_ns}")


def _hash_file(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _entry_path(key: str) -> Path:
    return cache_dir() / "content-sha256" / (hashlib.sha256(key.encode()).hexdigest() + ".json")


def _cached(key: str) -> str | None:
    try:
        entry = json.loads(_entry_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    sha = entry.get("sha256")
    if isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha):
        return sha
    return None


def _store(key: str, sha: str) -> None:
    target = _entry_path(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"key": key, "sha256": sha}, handle)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass   # a read-only or full cache folder: the hash is recomputed next time, nothing else changes


def file_sha256(file: str | Path) -> str:
    """sha256 of a file's content, from the cache when the file's metadata key is unchanged."""
    file = Path(file)
    key = _fast_key(file)
    sha = _cached(key)
    if sha is None:
        sha = _hash_file(file)
        if _fast_key(file) == key:   # not modified while it was read: safe to cache
            _store(key, sha)
    return sha


def checkpoint_files(path: str | Path) -> list[Path]:
    """The files the identity covers: the side files present and every weight file, sorted by name."""
    path = Path(path)
    side = [path / name for name in SIDE_FILES if (path / name).is_file()]
    weights = sorted(p for pattern in WEIGHT_PATTERNS for p in path.glob(pattern) if p.is_file())
    return sorted(side + weights, key=lambda p: p.name)


def checkpoint_identity(path: str | Path) -> dict[str, str]:
    """``{file name: content sha256}`` for every file the identity covers."""
    return {file.name: file_sha256(file) for file in checkpoint_files(path)}


def checkpoint_fingerprint(path: str | Path, files: dict[str, str] | None = None) -> str:
    """One sha256 over (name, content sha256) of every covered file: the checkpoint's identity in run.json."""
    if files is None:
        try:
            files = checkpoint_identity(path)
        except OSError as exc:
            name = exc.filename or path
            raise CheckpointError(f"{name}: cannot read this checkpoint file ({exc.strerror or exc}); fix its "
                                  "permissions or restore it") from None
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]}\n".encode())
    return digest.hexdigest()
