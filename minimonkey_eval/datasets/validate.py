"""Checks on every TSV cell handed to VLMEvalKit, before vlmeval reads the file: no data file runs code or writes
outside the data folder.

VLMEvalKit calls Python ``eval`` on cells: ``istype(index, int)`` on every index, ``toliststr`` on ``image`` and
``image_path`` cells written as ``[...]``, ``istype(answer, list)`` on VQA answers, ``eval(answer)`` in OCRBench,
``eval(choices)`` / ``eval(skills)`` in MathVista. It also writes ``<img_root>/<index>.jpg`` (and
``<img_root>/<image_path>`` for multi-image rows). So, with literal parsing only (``ast``, never ``eval``):

* index: a plain integer (|i| < 2**53, so the xlsx keeps it exact) or a name of letters, digits and ``_``;
* image: base64 text, an index of another row (VLMEvalKit's image reference), or a list literal of strings;
* image_path: a path, or a list literal of paths; names under the image folder (multi-image rows) are plain file
  names, no ``/`` or ``..``;
* any other cell vlmeval evaluates: a literal, text that is not Python, or a harmless expression (names, numbers,
  + - / and comparisons; no calls, attributes, subscripts, lambdas or huge powers);
* dataset-specific types: OCRBench answers are list literals of strings and categories are OCRBench's own;
  MathVista ``choices`` (multi-choice rows) and ``skills`` are list literals.

A bad cell is one ``DataError`` line naming file, row, column and what is allowed. The checks read the TSV as text
(``dtype=str``); ``check_image_file`` guards every image file read (no FIFO or device can block a run).
"""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

MAX_SAFE_INT = 2 ** 53                   # beyond this the xlsx (a float) no longer keeps the index exact
MAX_CELL_CHARS = 64 << 20                # one cell: 64 MiB of text (a huge base64 image is still far below)
MAX_IMAGE_BYTES = 512 << 20              # an image file read for a sample
_INT_RE = re.compile(r"^-?[0-9]{1,16}$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=-]{0,254}$")
_KEYWORD_NAMES = {"True", "False", "None", "__debug__"}
# Names pandas reads as a missing value or a float (its default NA strings, inf, infinity) in any case: as an index
# they would become NaN in vlmeval's loaded table, and the row's scores would be blank.
_BARE_CR = re.compile(rb"\r(?!\n)")
_NA_NAMES = {"nan", "na", "n_a", "null", "none", "inf", "infinity", "nat"}
OCRBENCH_CATEGORIES = (
    "Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition", "Handwriting Recognition",
    "Digit String Recognition", "Non-Semantic Text Recognition", "Scene Text-centric VQA", "Doc-oriented VQA",
    "Key Information Extraction", "Handwritten Mathematical Expression Recognition",
)
# Expression nodes that cannot run code, touch attributes or allocate without bound.
_SAFE_NODES = (ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Tuple, ast.List, ast.Set, ast.Dict,
               ast.UnaryOp, ast.UAdd, ast.USub, ast.Not, ast.Invert, ast.BinOp, ast.Add, ast.Sub, ast.Div,
               ast.FloorDiv, ast.Mod, ast.BitOr, ast.BitAnd, ast.BitXor, ast.Mult, ast.Pow, ast.BoolOp, ast.And,
               ast.Or, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In,
               ast.NotIn, ast.IfExp)


class CellError(ValueError):
    """One bad cell (turned into a DataError naming file, row and column)."""


# ------------------------------------------------------------------------------------------------ expressions
def _small_number(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and \
        not isinstance(node.value, bool) and abs(node.value) <= 1_000_000


def unsafe_expression(text: str) -> str | None:
    """Why ``eval(text)`` could do more than compute a small value (None: it cannot, or it is not Python)."""
    if len(text) > MAX_CELL_CHARS:
        return f"cell of {len(text)} characters (at most {MAX_CELL_CHARS})"
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None             # eval raises SyntaxError: vlmeval treats the cell as text
    nodes = list(ast.walk(tree))      # iterative: a deep tree parses (or not) above, it does not recurse here
    if len(nodes) > 10_000:
        return "expression too large"
    for node in nodes:
        if not isinstance(node, _SAFE_NODES):
            return f"it is Python code ({type(node).__name__})"
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            return f"it names {node.id}"
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Pow)) and \
                not (_small_number(node.left) and _small_number(node.right) and
                     (not isinstance(node.op, ast.Pow) or abs(node.right.value) <= 64)):
            return "an unbounded product or power"
    return None


def literal(text: str, what: str):
    """``ast.literal_eval`` with a one-line reason."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise CellError(f"{what} must be a Python literal, got {_short(text)}") from None


def _short(text: str, n: int = 60) -> str:
    text = str(text)
    return repr(text if len(text) <= n else text[:n] + "...")


def _list_of_str(text: str, what: str) -> list[str]:
    value = literal(text, what)
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise CellError(f"{what} must be a list literal of strings such as ['a', 'b'], got {_short(text)}")
    return value


# ------------------------------------------------------------------------------------------------ cells
def check_index(text: str) -> None:
    if _INT_RE.match(text):
        if abs(int(text)) >= MAX_SAFE_INT:
            raise CellError(f"index {text} is above 2**53: the prediction xlsx would store it as an inexact float; "
                            "renumber the rows")
        return
    if _NAME_RE.match(text) and text.lower() in _NA_NAMES:
        raise CellError(f"index {_short(text)} reads as a missing value or a float (pandas turns it into NaN); "
                        "use an integer or another name")
    if _NAME_RE.match(text) and text not in _KEYWORD_NAMES:
        return
    raise CellError(f"index {_short(text)} is not a plain integer or a name of letters, digits and '_' "
                    "(VLMEvalKit evaluates it as Python and names the image file after it)")


def check_image_cell(text: str, indexes: set[str], own_index: str | None = None,
                     references: frozenset[str] = frozenset()) -> None:
    """``indexes``: every index of the file; ``references``: indexes whose own image cell is a reference."""
    text = text.strip()
    if len(text) <= 64:
        if text not in indexes:
            raise CellError(f"image {_short(text)}: a cell of 64 characters or fewer must be the index of another "
                            "row (VLMEvalKit's image reference)")
        if own_index is not None and text == own_index.strip():
            raise CellError(f"image {_short(text)} refers to its own row; put the image (base64) in this cell")
        if text in references:
            raise CellError(f"image {_short(text)} refers to a row whose image is itself a reference; refer to the "
                            "row that holds the image")
        return
    if text.startswith("[") and text.endswith("]"):   # vlmeval evaluates it: a list literal of strings only
        _list_of_str(text, "a multi-image 'image' cell")
    # other text is decoded per sample: bytes that are not an image make a failed sample, not a data error


def image_path_names(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return _list_of_str(text, "a multi-image 'image_path' cell")
    return [text]


def check_relative_name(name: str) -> None:
    """A name vlmeval joins onto the image folder: relative, no '..' part (it would write outside)."""
    parts = name.replace("\\", "/").split("/")
    if not name.strip() or name.startswith(("/", "~")) or "\x00" in name or any(p in ("..", "") for p in parts):
        raise CellError(f"image_path {_short(name)} names a file inside the image folder: a relative path without "
                        "'..' (and not absolute) is needed")


def check_path_cell(text: str) -> None:
    for name in image_path_names(text):
        if "\x00" in name or not name.strip():
            raise CellError(f"image_path {_short(name)} is not a file path")


# ------------------------------------------------------------------------------------------------ the file
def read_text_table(path: Path):
    """The TSV as strings (no type inference, empty cells ''), as vlmeval's reader splits it."""
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parser failure is one line about the file
        raise CellError(f"not a readable TSV ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


def validate_tsv(path: Path, bench, eval_columns: tuple[str, ...] = (), table=None) -> int:
    """Check every cell vlmeval will evaluate or turn into a path; returns the number of rows. Raises CellError
    with 'row N (index X), column C: ...'. ``table``: the file as ``read_text_table`` returns it, if already read."""
    check_line_ends(path)
    df = read_text_table(path) if table is None else table
    if "index" not in df.columns:
        return len(df)          # the missing-column check names it
    indexes = [str(x) for x in df["index"]]
    index_set = set(indexes)
    columns = set(df.columns)
    multi = "image" in columns
    references = frozenset()
    if multi:
        images = [str(x).strip() for x in df["image"]]
        references = frozenset(i.strip() for i, im in zip(indexes, images) if im and len(im) <= 64)
        _check_repeated_indexes(indexes, images)
    to_eval = [c for c in ("answer", "choices", "skills", *eval_columns) if c in columns and _evaluated(bench, c)]
    for pos in range(len(df)):
        row = df.iloc[pos]
        where = f"row {pos + 1} (index {_short(indexes[pos], 30)})"
        col = "index"
        try:
            check_index(indexes[pos].strip())
            if multi and row["image"].strip():
                col = "image"
                check_image_cell(row["image"], index_set, indexes[pos], references)
            if "image_path" in columns and row["image_path"].strip():
                col = "image_path"
                check_path_cell(row["image_path"])
                if multi and row["image"].strip():   # decoded to <img_root>/<image_path>
                    for name in image_path_names(row["image_path"]):
                        check_relative_name(name)
            for col in to_eval:
                value = row[col]
                why = unsafe_expression(value) if value.strip() else None
                if why:
                    raise CellError(f"VLMEvalKit evaluates this cell as Python and {why}; write a literal "
                                    f"(a string, a number or a list) instead of {_short(value)}")
            col = "answer"
            _dataset_types(bench, row, columns)
        except CellError as exc:
            raise CellError(f"{where}, column {col!r}: {exc}") from None
    return len(df)


def check_line_ends(path: Path) -> None:
    """A bare carriage return (CR not followed by LF) in an unquoted cell makes the TSV reader (pandas, as vlmeval
    reads it) end the row there, which shifts every later cell of the row: refuse it, naming the line. A CR inside
    a quoted cell (one that starts with ``"``) is kept by the reader and allowed."""
    data = Path(path).read_bytes()
    for match in _BARE_CR.finditer(data):
        at = match.start()
        field_start = max(data.rfind(b"\t", 0, at), data.rfind(b"\n", 0, at)) + 1
        if data[field_start:field_start + 1] == b'"':
            continue
        line_no = data.count(b"\n", 0, at) + 1
        raise CellError(f"line {line_no}: a bare carriage return (\\r) inside an unquoted cell would split the "
                        "row there; replace it with a space")


def _check_repeated_indexes(indexes: list[str], images: list[str]) -> None:
    """Two rows with one index and different image cells: VLMEvalKit maps images by index, so the first row would
    be answered on the last row's image. Refused (a repeat with the same image is a failed sample, not an error)."""
    first: dict[str, int] = {}
    for pos, key in enumerate(i.strip() for i in indexes):
        if key in first and images[first[key]] != images[pos]:
            raise CellError(f"rows {first[key] + 1} and {pos + 1} share index {_short(key, 30)} but hold different "
                            "images (VLMEvalKit would answer both on one of them); give every row its own index")
        first.setdefault(key, pos)


def _evaluated(bench, column: str) -> bool:
    """Columns vlmeval passes to eval for this dataset (answers: VQA process_line and OCRBench; MathVista)."""
    if column == "answer":
        return bench.kind == "VQA"
    return bench.vlmeval_name.startswith("MathVista")


def _dataset_types(bench, row, columns) -> None:
    name = bench.vlmeval_name
    if name == "OCRBench":
        if "answer" in columns:
            _list_of_str(row["answer"], "an OCRBench answer")
        if "category" in columns and row["category"] not in OCRBENCH_CATEGORIES:
            raise CellError(f"OCRBench category {_short(row['category'])} is not one of OCRBench's "
                            f"{len(OCRBENCH_CATEGORIES)} ({', '.join(OCRBENCH_CATEGORIES[:3])}, ...)")
    elif name.startswith("MathVista"):
        if "choices" in columns and row.get("question_type", "") == "multi_choice":
            _list_of_str(row["choices"], "MathVista 'choices' (multi_choice row)")
        if "skills" in columns and row["skills"].strip():
            _list_of_str(row["skills"], "MathVista 'skills'")


# ------------------------------------------------------------------------------------------------ image files
def check_image_file(path, error=CellError, probe: bool = False) -> None:
    """A regular, readable file of at most MAX_IMAGE_BYTES (never a FIFO, socket or device, which could block a
    read forever); with ``probe`` also an image Pillow can identify. Raises ``error`` saying what is wrong."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: image file not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the image file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file (a FIFO, socket or device); pass an image file")
    if st.st_size == 0:
        raise error(f"{path}: empty image file")
    if st.st_size > MAX_IMAGE_BYTES:
        raise error(f"{path}: image file of {st.st_size} bytes is over the {MAX_IMAGE_BYTES}-byte cap")
    if not os.access(path, os.R_OK):
        raise error(f"{path}: image file not readable (permissions)")
    if probe:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.size  # noqa: B018
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise error(f"{path}: not an image Pillow can read ({type(exc).__name__})") from None


def check_message_images(message) -> None:
    """Every image of a vlmeval message is a readable regular file (raises CellError: a failed sample's reason)."""
    for item in message or ():
        if isinstance(item, dict) and item.get("type") == "image":
            check_image_file(item.get("value"))


def dump_targets(dataset, line) -> list[Path]:
    """The files vlmeval's ``ImageBaseDataset.dump_image`` opens for ``line`` (read_ok) before reusing or writing:
    ``<img_root>/<image_path>`` (one or a list), else ``<img_root>/<index>.png`` / ``<index>_<i>.png``; rows without
    an image cell: the ``image_path`` paths as given and under img_root."""
    img_root = Path(dataset.img_root)
    image = line.get("image") if hasattr(line, "get") else None
    paths = line.get("image_path") if hasattr(line, "get") else None
    if "image" in line and image is not None:
        if isinstance(image, list):
            names = paths if isinstance(paths, list) else [f"{line['index']}_{i}.png" for i in range(len(image))]
            return [img_root / str(n) for n in names]
        if isinstance(paths, str):
            return [img_root / paths]
        return [img_root / f"{line['index']}.png"]
    if paths is None:
        return []
    names = paths if isinstance(paths, list) else image_path_names(str(paths))
    return [Path(str(n)) for n in names] + [img_root / str(n) for n in names]


def guard_dump_targets(dataset, line) -> None:
    """vlmeval's ``dump_image`` opens these files with Pillow (``read_ok``): a FIFO or device there would block
    forever. Raise CellError (the sample's reason) for any that exists and is not a regular file."""
    for target in dump_targets(dataset, line):
        try:
            st = os.stat(target)
        except (OSError, ValueError):
            continue
        if stat.S_ISDIR(st.st_mode):
            raise CellError(f"{target}: is a directory, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise CellError(f"{target}: not a regular file (a FIFO, socket or device); it would block the read")


# ------------------------------------------------------------------------------------------------ dumped images
IMAGE_MANIFEST = ".minimonkey_images.json"


def _cell_hash(value) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in (value if isinstance(value, list) else [value]):
        h.update(str(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def refresh_dumped_images(dataset) -> int:
    """Delete decoded images under ``dataset.img_root`` whose TSV cell changed since they were decoded (or whose
    source is unknown), so vlmeval decodes them again; record the cells' hashes. Returns how many were removed.

    vlmeval reuses ``<img_root>/<index>.jpg`` whenever it opens, so without this a changed TSV image would be
    answered on the OLD picture."""
    data = dataset.data
    if "image" not in data:
        return 0
    root = Path(dataset.img_root)
    manifest_path = root / IMAGE_MANIFEST
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        old = old if isinstance(old, dict) else {}
    except (OSError, ValueError):
        old = {}
    new: dict[str, str] = {}
    removed = 0
    for pos in range(len(data)):
        line = data.iloc[pos]
        digest = _cell_hash(line["image"])
        for target in dump_targets(dataset, line):
            name = str(target.relative_to(root)) if target.is_relative_to(root) else str(target)
            new[name] = digest
            if old.get(name) != digest and os.path.lexists(target) and not target.is_dir():
                try:
                    target.unlink()
                    removed += 1
                except OSError:
                    pass
    if removed:
        logger.warning("%s: %d decoded image(s) no longer match the TSV (or have no record); decoding them again",
                       root, removed)
    if new != old:
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = manifest_path.with_name(f".{IMAGE_MANIFEST}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(new), encoding="utf-8")
            os.replace(tmp, manifest_path)
        except OSError as exc:
            logger.warning("%s: cannot record the decoded images (%s)", manifest_path, exc)
    return removed
