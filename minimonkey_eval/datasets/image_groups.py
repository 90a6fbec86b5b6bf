"""Which rows of a VLMEvalKit TSV ask about the same image, read from the TSV itself (no pixel is hashed).

VLMEvalKit's TSVs say it: a repeated image's ``image`` cell holds the ``index`` of the row that carries it (a cell
of 64 characters or fewer, resolved by ``ImageBaseDataset.__init__``), and rows whose images are dumped to one
file repeat its ``image_path``; a TSV that repeats the image itself repeats its base64 text. :func:`tsv_image_groups`
joins all three (union-find: a reference joins the carrier's group, an equal ``image_path`` or an equal image cell
(compared by a digest taken while parsing) joins the groups of its rows) and names every group by the ``index`` of
its first row in file order, so the names are the same in every process (torchrun ranks shard by them) and on every
read.
:func:`row_groups` gives the group of each row of a loaded dataset object (``None`` where the TSV says nothing:
no image cell, or no TSV), read once per file version (cached by path, size and modification time).
Only the ``index``, ``image`` (short cells; a long one is kept as its digest) and ``image_path`` columns are read.
"""
from __future__ import annotations

import ast
import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

from minimonkey_eval.datasets.indexes import index_key

REFERENCE_MAX_CHARS = 64   # VLMEvalKit: an ``image`` cell this short is another row's index
_CACHE_SIZE = 8
_cache: "OrderedDict[tuple, dict[str, str]]" = OrderedDict()
_lock = threading.Lock()


PAYLOAD_MARK = "\x00"   # a long ``image`` cell (the image itself) is read as this mark + the digest of its text


def payload_key(cell: str) -> str:
    """A short stand-in for an ``image`` cell: the cell itself when it is a reference, else :data:`PAYLOAD_MARK` +
    the SHA-1 of its text (equal images stored twice get equal keys; memory stays small)."""
    if len(cell) <= REFERENCE_MAX_CHARS:
        return cell
    return PAYLOAD_MARK + hashlib.sha1(cell.encode("utf-8", "surrogatepass")).hexdigest()


def _paths(cell: str):
    """An ``image_path`` cell as a hashable: one path, or a tuple for a list literal (multi-image rows)."""
    text = cell.strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, (list, tuple)):
            return tuple(str(v) for v in value)
    return text


class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, node):
        self.parent.setdefault(node, node)
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def groups_from_columns(index, image=None, image_path=None) -> dict[str, str]:
    """``index key -> group name`` from the columns' cells (strings; ``image`` may hold :func:`payload_key` s:
    references, and payloads as :data:`PAYLOAD_MARK` + digest, a bare mark being a payload equal to no other).

    A row is in a group when it has an image cell or an image path; its group is named ``'row:<index>'`` after the
    first row (in the given order) of the group."""
    n = len(index)
    keys = [index_key(i) for i in index]
    known = set(keys)
    uf = _UnionFind()
    has_image = [False] * n
    for pos in range(n):
        node = ("row", keys[pos])
        cell = str(image[pos]).strip() if image is not None and image[pos] is not None else ""
        if image is not None and cell not in ("", "nan"):
            has_image[pos] = True
            if cell.startswith(PAYLOAD_MARK) and len(cell) > len(PAYLOAD_MARK):
                uf.union(("payload", cell), node)            # the same image stored twice
            elif len(cell) <= REFERENCE_MAX_CHARS and index_key(cell) in known and index_key(cell) != keys[pos]:
                uf.union(("row", index_key(cell)), node)
            else:
                uf.find(node)
        path = str(image_path[pos]).strip() if image_path is not None and image_path[pos] is not None else ""
        if path not in ("", "nan"):
            has_image[pos] = True
            uf.union(("path", _paths(path)), node)
    out: dict[str, str] = {}
    names: dict = {}
    for pos in range(n):
        if not has_image[pos]:
            continue
        root = uf.find(("row", keys[pos]))
        out[keys[pos]] = names.setdefault(root, f"row:{keys[pos]}")
    return out


def tsv_image_groups(path: str | Path) -> dict[str, str]:
    """``index key -> group name`` of the TSV at ``path`` (empty when it has no ``index`` or no image column)."""
    import pandas as pd

    path = Path(path)
    stat = path.stat()
    ident = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if ident in _cache:
            _cache.move_to_end(ident)
            return _cache[ident]
    header = set(pd.read_csv(path, sep="\t", nrows=0).columns)
    columns = [c for c in ("index", "image", "image_path") if c in header]
    groups: dict[str, str] = {}
    if "index" in columns and len(columns) > 1:
        df = pd.read_csv(path, sep="\t", usecols=columns, keep_default_na=False,
                         dtype={c: str for c in columns if c != "image"},
                         converters={"image": payload_key} if "image" in columns else None)
        groups = groups_from_columns(list(df["index"]), list(df["image"]) if "image" in df else None,
                                     list(df["image_path"]) if "image_path" in df else None)
    with _lock:
        _cache[ident] = groups
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return groups


def dataset_tsv(dataset) -> Path | None:
    """The TSV a loaded VLMEvalKit dataset object was read from (``data_path``), if it still exists."""
    path = getattr(dataset, "data_path", None)
    if not path or not os.path.isfile(path):
        return None
    return Path(path)


def row_groups(dataset) -> list[str | None]:
    """The image group of every row of ``dataset.data`` (by position); ``None`` where the TSV says nothing."""
    data = dataset.data
    path = dataset_tsv(dataset)
    if path is None or "index" not in data:
        return [None] * len(data)
    groups = tsv_image_groups(path)
    return [groups.get(index_key(i)) for i in data["index"]]


__all__ = ["PAYLOAD_MARK", "REFERENCE_MAX_CHARS", "dataset_tsv", "groups_from_columns", "payload_key",
           "row_groups", "tsv_image_groups"]
