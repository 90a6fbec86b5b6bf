"""The runner's defences against unlucky or hostile input (hooks called from ``runner.py``; the option caps are
``options.OPTION_CAPS``, the run record's shape checks ``record.check_shape``).

* ``check_run_folder``: a symlink in the run folder, or a file where it needs a folder, is one line, before anything
  is written;
* ``stamp`` / ``load_own``: every prediction record carries its dataset and a fingerprint of its row; a record of
  another dataset or another row (a copied or edited part file) is not taken as done;
* ``limit_rows``: ``--limit`` never splits an MME image pair (rounded up to whole pairs, said in the log);
* ``score_or_fail``: anything vlmeval raises while scoring is one ``RunError`` naming the dataset (predictions kept);
* ``judge_in_use``: the judge actually used (vlmeval falls back to exact matching when the API is unreachable);
* ``failure_reason``: every failed sample's reason says what was wrong, even for an empty exception message.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import traceback

from minimonkey_eval.errors import UserFacingError
from minimonkey_eval.eval.run.store import index_key, merge_records, read_records
from minimonkey_eval.eval.runfiles.files import symlink_refusal
from minimonkey_eval.eval.runfiles.layout import RunLayout

logger = logging.getLogger(__name__)

ROW_KEY = "row"     # record field: fingerprint of the dataset row the prediction answers
DATASET_KEY = "dataset"


class GuardError(UserFacingError):
    """A bad run folder or a scoring failure (one line)."""


# ------------------------------------------------------------------------------------------------ records
def row_fingerprint(line) -> str:
    """A short hash of what a row asks: index, question and image (cell, or image_path)."""
    h = hashlib.blake2b(digest_size=8)
    for key in ("index", "question", "image", "image_path"):
        if key in line:
            value = line[key]
            for part in (value if isinstance(value, list) else [value]):
                h.update(str(part).encode("utf-8", "surrogatepass"))
                h.update(b"\x1f")
        h.update(b"\x1e")
    return h.hexdigest()


def fingerprints(dataset) -> dict[str, str]:
    data = dataset.data
    out: dict[str, str] = {}
    for p in range(len(data)):   # a repeated index: the first row is the one inferred
        key = index_key(data.iloc[p]["index"])
        if key not in out:
            out[key] = row_fingerprint(data.iloc[p])
    return out


def stamp(records: list[dict], rows: list, dataset_name: str) -> list[dict]:
    """Add dataset and row fingerprint to each record (in place) before it is written."""
    for record, line in zip(records, rows):
        record[DATASET_KEY] = dataset_name
        record[ROW_KEY] = row_fingerprint(line)
    return records


def load_own(store, dataset, prints: dict[str, str] | None = None) -> dict[str, dict]:
    """``store.load()`` restricted to records made for this dataset's rows as they are now: another dataset's line, a
    line without the stamp (hand-made or from an older version) or a row whose question/image changed is not done
    (filtered before merging, so a foreign line can never shadow the real record of its index)."""
    prints = prints if prints is not None else fingerprints(dataset)
    name = dataset.dataset_name
    dropped = 0

    def own(records):
        nonlocal dropped
        for r in records:
            key = index_key_of(r)
            if r.get(DATASET_KEY) == name and key in prints and r.get(ROW_KEY) == prints[key]:
                yield r
            elif key in prints:
                dropped += 1

    merged = merge_records(list(own(read_records(p))) for p in store.part_paths())
    if dropped:
        logger.warning("%s: %d prediction line(s) belong to another dataset or to a changed row; not used",
                       name, dropped)
    return merged


def index_key_of(record: dict) -> str:
    return index_key(record.get("index"))


# ------------------------------------------------------------------------------------------------ limit
def limit_rows(dataset, limit: int | None):
    """The first ``limit`` rows; for datasets scored in pairs / groups sharing an image (MME: two questions per
    image, scored together as acc+), rounded up to whole groups so no half pair is scored."""
    if not limit:
        return dataset
    data = dataset.data
    n = min(limit, len(data))
    if dataset.dataset_name == "MME" and "image_path" in data and 0 < n < len(data):
        keys = data["image_path"].map(str).tolist()
        last = keys[n - 1]
        while n < len(data) and keys[n] == last:
            n += 1
        if n != limit:
            logger.warning("MME: --limit %d would split a question pair (acc+ scores both questions of an image); "
                           "using %d rows", limit, n)
    dataset.data = data.iloc[:n]
    return dataset


# ------------------------------------------------------------------------------------------------ scoring
def score_or_fail(name: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` (vlmeval's scoring); any failure is one GuardError naming the dataset. The
    predictions are already saved, so a rerun scores them again without inferring."""
    try:
        return fn(*args, **kwargs)
    except UserFacingError as exc:
        raise GuardError(f"{name}: scoring failed: {exc}") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - vlmeval's evaluate can raise anything on odd data
        where = _last_frame(exc)
        raise GuardError(f"{name}: VLMEvalKit's scoring failed ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200] or 'no message'}{where}); the predictions are kept - fix "
                         "the data and rerun the same command to score them") from None


def judge_in_use(judge):
    """(judge to hand vlmeval, note): vlmeval silently falls back to exact matching when no API key is set or the
    judge does not answer; we decide it up front so the score sheet says what was used."""
    if judge is None or judge == "exact_matching":
        return judge, None
    model = judge if isinstance(judge, str) else dict(judge).get("model")
    try:
        from vlmeval.smp import gpt_key_set

        if not gpt_key_set():
            return None, f"judge {model} unavailable (no API key set): exact matching used"
        from vlmeval.dataset.utils import build_judge

        if not build_judge(model=model, **({} if isinstance(judge, str) else
                                              {k: v for k, v in dict(judge).items() if k != "model"})).working():
            return None, f"judge {model} unreachable: exact matching used"
    except Exception as exc:  # noqa: BLE001 - any failure to reach the judge means it was not used
        return None, f"judge {model} unusable ({type(exc).__name__}): exact matching used"
    return judge, None


# ------------------------------------------------------------------------------------------------ reasons
def _last_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if not frames:
        return ""
    f = frames[-1]
    return f" at {os.path.basename(f.filename)}:{f.lineno}"


def failure_reason(exc: BaseException) -> str:
    """The text of a failed sample's reason: the exception's message, or (empty message) what failed where."""
    text = " ".join(str(exc).split())
    if text:
        return text
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if frames:
        f = frames[-1]
        code = (f.line or "").strip()
        return f"check failed at {os.path.basename(f.filename)}:{f.lineno}" + (f" ({code})" if code else "")
    return f"{type(exc).__name__} without a message"


# ------------------------------------------------------------------------------------------------ run folder
def check_run_folder(layout: RunLayout) -> None:
    """Before a run writes: no symlink anywhere in the run folder (checked with ``lstat``, so a link -- to a file
    elsewhere, to another run folder, or a loop -- is named and never followed), and the parts that must be folders
    are folders (a file there would fail half-way through the run)."""
    for path in [layout.run_dir, *_entries(layout.run_dir), *_entries(layout.predictions_dir)]:
        if path.is_symlink():
            raise symlink_refusal(path)
    path = layout.predictions_dir
    if os.path.lexists(path) and not stat.S_ISDIR(os.lstat(path).st_mode):
        raise GuardError(f"{path}: is a file, not the predictions folder; move it away or use --overwrite")


def _entries(folder) -> list:
    """The entries of ``folder`` (none when it is missing or not a real folder)."""
    if not os.path.isdir(folder) or os.path.islink(folder):
        return []
    return list(folder.iterdir())


def record_no_samples(record, layout: RunLayout, name: str, limit) -> None:
    """A dataset with no rows to answer (a header only, or every image cell empty): no headline, never 0.0, in
    ``record`` (a ``RunRecord``). A score sheet from an earlier run of it is removed so the summary cannot show a
    stale number."""
    for stale in (layout.score_csv(name), layout.score_xlsx(name)):
        if stale.exists():
            stale.unlink()
    logger.warning("%s: no samples to evaluate (the TSV has no rows with an image); no headline", name)
    if name not in record.datasets:
        record.datasets.append(name)
    record.results[name] = {"rows": 0, "failed": 0, "headline": None, "extraction": "",
                            "notes": "no samples: the TSV has no rows with an image", "limit": limit}
