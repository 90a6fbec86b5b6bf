"""Pre-flight check of one benchmark TSV (``minimonkey-eval doctor --data``), without building vlmeval's dataset.

``check_tsv(name, data_root)`` is one :class:`~minimonkey_eval.preflight.Check` row:

* the file is there (else FAIL naming the path and VLMEvalKit's URL for it) and holds the columns the dataset's
  vlmeval ``evaluate`` needs, every cell passing the checks a run applies first (``validate.validate_tsv``);
* a sample of its image cells (evenly spread; all with ``sample=0``) decode with VLMEvalKit's own
  ``decode_base64_to_image``, as a run decodes them (FAIL naming the row if not);
* its md5 against VLMEvalKit's expected one, read from the dataset class's ``DATASET_MD5`` table in the installed
  vlmeval (never downloaded): a match is OK; a synthetic fixture (``minimonkey_fixtures.json`` beside it lists its
  exact bytes) is a WARN "not VLMEvalKit's file"; any other difference is a WARN naming it: another version of the
  benchmark, whose scores are not comparable to the published card.
"""
from __future__ import annotations

from pathlib import Path

from minimonkey_eval.datasets.local import (
    benchmark_for,
    dataset_class,
    file_md5,
    import_vlmeval,
    is_synthetic_fixture,
    md5_difference,
    missing_columns,
    missing_tsv_message,
)
from minimonkey_eval.datasets.validate import CellError, literal, read_text_table, validate_tsv
from minimonkey_eval.preflight import FAIL, INFO, OK, WARN, Check

DEFAULT_SAMPLE = 8      # image cells decoded per TSV (the doctor's --sample default)


def md5_verdict(path: Path, name: str, expected: str | None) -> tuple[str, str]:
    """(status, words) for the file's md5 against VLMEvalKit's ``expected``."""
    actual = file_md5(path)
    if expected is None:
        return INFO, f"md5 {actual} (VLMEvalKit lists no md5 for {name})"
    if actual == expected:
        return OK, "md5 matches VLMEvalKit's"
    if is_synthetic_fixture(path, actual):
        return WARN, (f"synthetic fixture, not VLMEvalKit's file (md5 {actual[:8]}... vs VLMEvalKit's "
                      f"{expected[:8]}...): its scores say nothing about the card")
    return WARN, f"{md5_difference(name, actual, expected)} (copy VLMEvalKit's file)"


def sample_positions(n_rows: int, sample: int) -> list[int]:
    """``sample`` row positions spread evenly over ``n_rows`` (all of them when ``sample`` is 0 or larger)."""
    if sample <= 0 or sample >= n_rows:
        return list(range(n_rows))
    return sorted({round(i * (n_rows - 1) / (sample - 1)) for i in range(sample)} if sample > 1 else {0})


def image_cells(cell: str, by_index: dict[str, str]) -> list[str]:
    """The base64 text(s) an ``image`` cell stands for: itself, a list of them, or the cell of the row it refers to."""
    cell = cell.strip()
    if len(cell) <= 64:
        cell = by_index.get(cell, "").strip()
    if cell.startswith("[") and cell.endswith("]"):
        return [str(x) for x in literal(cell, "a multi-image 'image' cell")]
    return [cell] if cell else []


def undecodable_image(df, sample: int) -> tuple[str | None, int]:
    """(the first sampled image cell of table ``df`` VLMEvalKit cannot decode, in words, or None; how many images
    were decoded)."""
    from vlmeval.smp import decode_base64_to_image  # lazy: vlmeval (check_tsv imports it first, $LMUData set)

    if "image" not in df.columns:
        return None, 0
    indexes = [str(x).strip() for x in df["index"]]
    by_index = dict(zip(indexes, (str(x) for x in df["image"])))
    decoded = 0
    for pos in sample_positions(len(df), sample):
        try:
            for text in image_cells(str(df["image"].iloc[pos]), by_index):
                decode_base64_to_image(text).load()
                decoded += 1
        except Exception as exc:  # noqa: BLE001 - binascii, PIL and literal errors alike: the row is named
            return (f"row {pos + 1} (index {indexes[pos]}): image cell does not decode ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:80]}); re-copy the TSV"), decoded
    return None, decoded


def check_tsv(name: str, data_root, sample: int = DEFAULT_SAMPLE) -> Check:
    """One row of the doctor's table for benchmark ``name`` under ``data_root`` (see the module docstring)."""
    bench = benchmark_for(name)
    vname = bench.vlmeval_name
    path = Path(data_root) / f"{vname}.tsv"
    import_vlmeval(data_root)
    cls = dataset_class(vname)
    if not path.is_file():
        return Check("data", vname, FAIL, missing_tsv_message(cls, vname, path) if not path.exists()
                     else f"{path}: not a regular file; point --data-root at the folder holding {vname}.tsv")
    try:
        missing = missing_columns(bench, path)
        if missing:
            return Check("data", vname, FAIL, f"{path}: missing column(s) {', '.join(missing)} needed by "
                                              f"VLMEvalKit's {cls.__name__}")
        table = read_text_table(path)           # read once: the cell checks and the image sample share it
        rows = validate_tsv(path, bench, table=table)
    except CellError as exc:
        return Check("data", vname, FAIL, f"{path}: {exc}")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return Check("data", vname, FAIL, f"{path}: not a readable TSV ({' '.join(str(exc).split())[:160]})")
    bad, decoded = undecodable_image(table, sample)
    if bad:
        return Check("data", vname, FAIL, f"{path}: {bad}")
    status, md5_words = md5_verdict(path, vname, cls.DATASET_MD5.get(vname))
    images = f"{decoded} sampled image(s) decode" if decoded else "no image column"
    return Check("data", vname, status, f"{rows} rows, {images}, {md5_words}")
