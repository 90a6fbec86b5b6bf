"""Offline VLMEvalKit datasets: vlmeval's own dataset object, built from `<data_root>/<NAME>.tsv` only.

`load_dataset(name)` returns the instance of the class `vlmeval.dataset.build_dataset` would pick
(ImageYORNDataset, ImageMCQDataset, MMMUDataset, ImageVQADataset, OCRBench, MathVista), reading the local
TSV and never touching the network unless `allow_download=True`:

* missing TSV           -> one-line `DataError` with the path, VLMEvalKit's URL for it and the fix;
* md5 != DATASET_MD5    -> a logged warning (info only for a synthetic TSV listed with its exact md5 in
                           `minimonkey_fixtures.json` beside it), the local file is used (vlmeval itself would
                           re-download it: `ImageBaseDataset.prepare_tsv` calls `download_file` on a mismatch, which
                           hangs offline; we hand vlmeval an instance-level empty md5 table so it skips that branch);
* missing columns       -> one-line `DataError` naming the file and the columns its evaluate() needs;
* unknown name          -> one-line `DataError` listing the known names.

vlmeval resolves its data root from `$LMUData` at construction (falling back to creating ~/LMUData);
we set it to `data_root` for exactly that moment (`process_state.lmudata_env`), so the TSV and the decoded images
(`<data_root>/images/<name>/`, or `image_root` if given) never land in the home directory.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from minimonkey_eval.console import quiet_vlmeval_import
from minimonkey_eval.datasets.registry import BENCHMARKS, Benchmark, get_benchmark
from minimonkey_eval.datasets.validate import CellError, refresh_dumped_images, validate_tsv
from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.process_state import LMUDATA_ENV, lmudata_env

logger = logging.getLogger(__name__)

BASE_COLUMNS = ("index", "question")
IMAGE_COLUMNS = ("image", "image_path")  # at least one of them


class DataError(UserFacingError):
    """A one-line problem with local benchmark data (missing file, missing columns, unknown name)."""


def known_datasets() -> tuple[str, ...]:
    return tuple(b.vlmeval_name for b in BENCHMARKS)


def default_data_root() -> Path:
    """VLMEvalKit's convention: `$LMUData`, else ~/LMUData (not created here)."""
    env = os.environ.get(LMUDATA_ENV)
    return Path(env) if env else Path.home() / "LMUData"


def benchmark_for(name: str) -> Benchmark:
    """Registry row for a VLMEvalKit name or paper column; unknown names raise a one-line DataError."""
    try:
        return get_benchmark(name)
    except ValueError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}") from None


def import_vlmeval(data_root=None):
    """Import vlmeval with $LMUData pointing at an existing folder: several vlmeval.dataset class bodies
    call LMUDataRoot() at import time, which otherwise creates ~/LMUData. No-op once imported."""
    if "vlmeval.dataset" in sys.modules:
        return sys.modules["vlmeval"]
    candidates = [Path(data_root)] if data_root is not None else []
    candidates += [default_data_root(), Path(tempfile.gettempdir())]
    with lmudata_env(next(p for p in candidates if p.is_dir())), quiet_vlmeval_import():
        import vlmeval.dataset  # noqa: F401  (slow: a few seconds; its '.env' error line is dropped, see console)
    return sys.modules["vlmeval"]


def dataset_class(vlmeval_name: str) -> type:
    """The class `vlmeval.dataset.build_dataset` would instantiate for this name (first match wins)."""
    from vlmeval.dataset import DATASET_CLASSES

    for cls in DATASET_CLASSES:
        if vlmeval_name in cls.supported_datasets():
            return cls
    raise DataError(f"vlmeval has no dataset class for {vlmeval_name!r}")


def tsv_path(name: str, data_root=None) -> Path:
    root = Path(data_root) if data_root is not None else default_data_root()
    return root / f"{benchmark_for(name).vlmeval_name}.tsv"


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


FIXTURE_MANIFEST = "minimonkey_fixtures.json"   # {tsv file name: md5} of synthetic TSVs written by make-fixtures


def is_synthetic_fixture(path: Path, md5: str | None = None) -> bool:
    """True if `path` is, byte for byte, a synthetic TSV that `write_sample_tsvs` wrote (its manifest says so)."""
    manifest = Path(path).parent / FIXTURE_MANIFEST
    try:
        recorded = json.loads(manifest.read_text()).get(Path(path).name)
    except (OSError, ValueError, AttributeError):
        return False
    return recorded is not None and recorded == (md5 or file_md5(path))


def warn_if_md5_mismatch(cls: type, name: str, path: Path) -> bool:
    """Log a warning when the TSV differs from VLMEvalKit's published md5; True if it matches (or none known).

    A synthetic fixture (listed with this exact md5 in the manifest beside it) differs by design: info, not warning."""
    expected = cls.DATASET_MD5.get(name)
    if expected is None:
        return True
    actual = file_md5(path)
    if actual == expected:
        return True
    if is_synthetic_fixture(path, actual):
        logger.info("%s: synthetic sample TSV (md5 differs from VLMEvalKit's by design)", path)
        return False
    _warn_once(f"{path}: {md5_difference(name, actual, expected)}; using the local file anyway (VLMEvalKit would "
               "try to re-download it; `minimonkey-eval doctor` checks every TSV)")
    return False


def md5_difference(name: str, actual: str, expected: str) -> str:
    """What a TSV whose md5 is not VLMEvalKit's means, in words (the run's warning and the doctor's row)."""
    return (f"md5 {actual} is not VLMEvalKit's {expected}: an older or edited {name} version: scores are not "
            "comparable to the card")


@functools.cache
def _warn_once(message: str) -> None:
    """A warning a process prints once (a run loads each dataset twice: to infer, then to score)."""
    logger.warning(message)


def missing_columns(bench: Benchmark, path: Path) -> list[str]:
    """Columns the dataset's vlmeval build_prompt/evaluate need that the TSV header lacks."""
    header = set(pd.read_csv(path, sep="\t", nrows=0).columns)
    missing = [c for c in BASE_COLUMNS + tuple(bench.columns) if c not in header]
    if not header & set(IMAGE_COLUMNS):
        missing.append(" or ".join(IMAGE_COLUMNS))
    return missing


def check_columns(bench: Benchmark, path: Path, cls_name: str) -> None:
    missing = missing_columns(bench, path)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} needed by VLMEvalKit's "
                        f"{cls_name} for {bench.vlmeval_name}")


def missing_tsv_message(cls: type, name: str, path: Path) -> str:
    url = cls.DATASET_URL.get(name) or "(no URL in vlmeval's DATASET_URL)"
    return (f"{name}: {path} not found; VLMEvalKit publishes it at {url} - copy it to {path.parent} "
            f"(or point --data-root/$LMUData at the folder holding it), or pass --allow-download")


def _construct(cls: type, name: str, root: Path, trust_local_file: bool):
    """Build the vlmeval dataset inside `root`. trust_local_file: an instance-level empty md5 table makes
    prepare_tsv take the 'file exists, no md5 to check' branch instead of re-downloading."""
    with lmudata_env(root):
        ds = cls.__new__(cls)
        if trust_local_file:
            ds.DATASET_MD5 = {}
        ds.__init__(dataset=name)
    return ds


def construct_error_message(path: Path, name: str, exc: BaseException) -> str:
    """One line for a TSV vlmeval's dataset class could not load (it asserts on bad image references)."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, AssertionError):
        try:
            df = pd.read_csv(path, sep="\t", usecols=["index", "image"], dtype=str, keep_default_na=False)
            indices = set(df["index"])
            bad = [i for i, v in zip(df["index"], df["image"]) if v and len(v) <= 64 and v not in indices]
            if bad:
                detail = (f"row index {bad[0]} ({len(bad)} row(s) in all): an 'image' cell of 64 characters or "
                          "fewer must be the index of another row (VLMEvalKit's image reference)")
        except Exception:  # noqa: BLE001 - best effort
            pass
    return f"{path}: VLMEvalKit cannot load {name}: {detail}"


def warn_if_rows_without_image(path: Path, ds) -> int:
    """vlmeval drops rows whose 'image' cell is empty (``skip_noimg``), as the official runs do; say so."""
    if "image" not in ds.data:
        return 0
    try:
        rows = len(pd.read_csv(path, sep="\t", usecols=["index"]))
    except Exception:  # noqa: BLE001 - only a warning
        return 0
    dropped = rows - len(ds.data)
    if dropped > 0:
        logger.warning("%s: %d row(s) without an image are skipped, as VLMEvalKit does (skip_noimg)", path, dropped)
    return max(dropped, 0)


def load_dataset(name: str, data_root=None, allow_download: bool = False, image_root=None,
                 refresh_images: bool = True):
    """vlmeval's dataset object for `name`, reading `<data_root>/<NAME>.tsv` (data_root: $LMUData or ~/LMUData).

    Images decode into `<data_root>/images/<name>/` (VLMEvalKit's layout) or `<image_root>/<name>/`.
    With allow_download=False nothing here touches the network. `refresh_images`: re-decode image files that no
    longer match their cell (a torchrun run passes it on rank 0 only: the others decode after the first barrier).
    """
    bench = benchmark_for(name)
    vname = bench.vlmeval_name
    root = Path(data_root) if data_root is not None else default_data_root()
    path = root / f"{vname}.tsv"
    import_vlmeval(root)
    cls = dataset_class(vname)
    if path.exists():
        if not path.is_file():
            raise DataError(f"{path}: is a directory or special file, not a TSV; point --data-root at the folder "
                            f"holding {vname}.tsv")
        warn_if_md5_mismatch(cls, vname, path)
        try:
            check_columns(bench, path, cls.__name__)
            validate_tsv(path, bench)   # before vlmeval evaluates any cell
        except CellError as exc:
            raise DataError(f"{path}: {exc}") from None
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a readable TSV ({' '.join(str(exc).split())[:200]})") from None
        try:
            ds = _construct(cls, vname, root, trust_local_file=True)
        except Exception as e:  # noqa: BLE001 - vlmeval asserts on bad cells; one line naming the file
            raise DataError(construct_error_message(path, vname, e)) from None
        warn_if_rows_without_image(path, ds)
    elif not allow_download:
        raise DataError(missing_tsv_message(cls, vname, path))
    else:
        root.mkdir(parents=True, exist_ok=True)
        try:
            ds = _construct(cls, vname, root, trust_local_file=False)
        except Exception as e:  # vlmeval raises a bare Exception('Failed to download <url>')
            raise DataError(f"{vname}: download to {path} failed: {e}") from None
        check_columns(bench, path, cls.__name__)
    if image_root is not None:
        ds.img_root = str(Path(image_root) / Path(ds.img_root).name)
    if refresh_images:
        refresh_dumped_images(ds)
    return ds
