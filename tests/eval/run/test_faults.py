"""Bad input and faults: nothing lost, nothing silently wrong.

Every kind below either evaluates, or is a failed sample with a reason in the predictions and the
``_samples.csv`` (counted, never dropped, never scored as a normal answer), or is one ``error:`` line (CLI exit 2).

Kinds (number. input: expected behaviour [test]):

1. corrupt base64 (> 64 chars): failed sample, reason 'prompt: UnidentifiedImageError' [test_bad_samples]
2. truncated base64 PNG: failed sample (image file is truncated) [test_bad_samples]
3. non-image bytes: failed sample (UnidentifiedImageError) [test_bad_samples]
4. CMYK JPEG: failed sample: vlmeval's dump cannot write CMYK as PNG [test_bad_samples]
5. RGBA PNG: evaluates (vlmeval converts to RGB) [test_bad_samples]
6. palette (P) PNG: evaluates [test_bad_samples]
7. LA (grey + alpha) PNG: evaluates [test_bad_samples]
8. 16-bit (I;16) PNG: evaluates [test_bad_samples]
9. grayscale (L) PNG: evaluates [test_bad_samples]
10. EXIF-rotated JPEG (orientation 6): evaluates, NOT rotated (reference .convert('RGB') ignores EXIF): the dumped
    image keeps its stored size [test_bad_samples]
11. 1x1 image: evaluates [test_bad_samples]
12. 1x20000 image: evaluates [test_bad_samples]
13. 20000x1 image: evaluates [test_bad_samples]
14. decompression bomb (60000x60000): failed sample, reason names --max-image-pixels [test_bad_samples]
15. missing / empty question (NaN cell): failed sample, 'row has no question' [test_bad_samples]
16. duplicate index: first row evaluates, the repeat is a failed sample [test_bad_samples]
17. unicode question (CJK, RTL, emoji): evaluates [test_bad_samples]
18. --max-image-pixels below an image: failed sample; 0 lifts the limit and it evaluates
    [test_max_image_pixels_override]
19. NaN options / NaN hint in an MCQ row: evaluates (NaN options skipped, like the official prompt)
    [test_mcq_nan_options_and_hint]
20. short bad 'image' cell (<= 64 chars): one line: vlmeval's image reference, naming the row [test_bad_data_files]
21. missing TSV: one line, exit 2 [test_bad_data_files]
22. missing required columns: one line naming the columns, exit 2 [test_bad_data_files]
23. wrong dataset name: one line listing the known names, exit 2 [test_bad_data_files]
24. work dir is a file: one line 'cannot write the run folder', exit 2 [test_bad_data_files]
25. unreadable run.json: one line, exit 2 [test_bad_data_files]
26. older run from another model/tiles: one line naming the difference, exit 2 (--overwrite ok)
    [test_bad_data_files]
27. predictions without run.json: one line, exit 2 [test_bad_data_files]
28. missing checkpoint dir (run): one line, exit 2 [test_bad_checkpoints_through_run]
29. missing shard (run): one line naming the shard, exit 2 [test_bad_checkpoints_through_run]
30. tokenizer/embedding mismatch (run): one line, exit 2 [test_bad_checkpoints_through_run]
31. unsupported LLM (run): one line, exit 2 [test_bad_checkpoints_through_run]
32. pickle-only checkpoint (run): one line, exit 2 (never unpickled) [test_bad_checkpoints_through_run]
33. OOM on a batch: split in halves, every answer as unsplit [test_oom_splits_then_fewer_tiles]
34. OOM on one sample: retried with halved tiles, reason 'oom: retried with ...' [test_oom_splits_then_fewer_tiles]
35. OOM at the fewest tiles: failed sample, reason 'oom even with the fewest tiles'
    [test_oom_splits_then_fewer_tiles]
36. a torchrun rank that died (no part): refuses to score: 'predictions missing', exit path 2
    [test_failed_rank_refuses_then_merges]
37. torn / corrupt lines in a rank part: skipped; the rerun fills them; merged == single process
    [test_failed_rank_refuses_then_merges]
38. a second run on a locked run folder: one line 'another run ... is writing' [test_lock_held_is_one_line]
39. SIGINT mid-run: exit 130, finished predictions kept, lock released, resume [test_sigint_stops_cleanly]
40. SIGKILL x >= 10, then completion: merged == uninterrupted run (tests/eval/run/test_kill_many.py) [test_kill_many]
41+. fuzzed tile sizes / prompt rows: tests/models/test_fuzz.py (hypothesis) [test_fuzz.*]
42+. hostile / unlucky input: the classes in docs/faults.md [tests/datasets/test_hostile.py,
     tests/datasets/test_edges.py]

(tests/models/test_checkpoint.py already covers missing/extra/mis-shaped tensors at the loader; not repeated here.)
"""
from __future__ import annotations

import base64
import io
import json
import math
import shutil
import signal

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.runner_utils import (
    FAST_TILES,
    CountingEngine,
    cli_args,
    gated_env,
    merged_predictions,
    part_lines,
    signal_at_gate,
    warm_run,
)
from PIL import Image

from minimonkey_eval import cli
from minimonkey_eval.datasets.fixtures import encode_image, sample_rows, write_sample_tsvs
from minimonkey_eval.eval.launch import run
from minimonkey_eval.eval.run import writers
from minimonkey_eval.eval.run.distributed import DistContext
from minimonkey_eval.eval.run.options import RunError, RunOptions
from minimonkey_eval.eval.run.store import RunLock
from minimonkey_eval.models import pipeline

VQA = "OCRBench"
MCQ = "AI2D_TEST"


def _opts(tmp_path, ckpt, root, **kw) -> RunOptions:
    base = dict(model="MiniMonkey", datasets=[VQA], model_path=str(ckpt), data_root=str(root),
                work_dir=str(tmp_path / "results"), tiles=FAST_TILES, max_new_tokens=4, batch_size=4)
    base.update(kw)
    return RunOptions(**base)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _jpeg(img: Image.Image, **kw) -> str:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return _b64(buf.getvalue())


def _samples(run_dir, dataset) -> pd.DataFrame:
    return pd.read_csv(run_dir / f"{dataset}_samples.csv", keep_default_na=False)


def _bomb() -> str:
    """A PNG header claiming 60000x60000 (3.6e9 pixels > 2 x vlmeval's 1e9 limit): Image.open refuses it."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 1, 0, 0, 0, 0)
    return _b64(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                + chunk(b"IEND", b""))


def _exif_rotated() -> str:
    exif = Image.Exif()
    exif[0x0112] = 6   # orientation: rotate 90 CW to display
    return _jpeg(Image.new("RGB", (40, 20), (200, 30, 30)), exif=exif.tobytes())


# row -> (image cell, question override or None, expected: 'ok' | reason substring)
def _bad_cells():
    good = encode_image(Image.new("RGB", (64, 48), (10, 120, 200)))
    png = base64.b64decode(good)
    grey16 = Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 50).astype(np.uint16))
    return [
        ("good", good, None, "ok"),
        ("corrupt base64", "!!!!" * 30, None, "UnidentifiedImageError"),
        ("truncated base64", _b64(png[: len(png) // 2]), None, "prompt:"),
        ("non-image bytes", _b64(b"this is not an image at all, just some text bytes " * 3), None,
         "UnidentifiedImageError"),
        ("CMYK", _jpeg(Image.new("CMYK", (40, 40), (0, 50, 100, 0))), None, "CMYK"),
        ("RGBA", encode_image(Image.new("RGBA", (40, 40), (1, 2, 3, 100))), None, "ok"),
        ("palette", encode_image(Image.new("RGB", (40, 40), (9, 9, 200)).convert("P")), None, "ok"),
        ("LA", encode_image(Image.new("LA", (40, 40), (80, 200))), None, "ok"),
        ("16-bit", encode_image(grey16), None, "ok"),
        ("grayscale", encode_image(Image.new("L", (40, 40), 128)), None, "ok"),
        ("EXIF rotated", _exif_rotated(), None, "ok"),
        ("1x1", encode_image(Image.new("RGB", (1, 1), (255, 0, 0))), None, "ok"),
        ("1x20000", encode_image(Image.new("RGB", (1, 20000), (0, 255, 0))), None, "ok"),
        ("20000x1", encode_image(Image.new("RGB", (20000, 1), (0, 0, 255))), None, "ok"),
        ("bomb", _bomb(), None, "--max-image-pixels"),
        ("missing question", good, math.nan, "no question"),
        ("duplicate index", good, None, "duplicate index"),
        ("unicode question", good, "读一读 — מה כתוב? 🙂\u200b", "ok"),
    ]


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("LMUData_bad")
    cells = _bad_cells()
    base = sample_rows(VQA, n=len(cells))
    assert len(base) >= len(cells)
    df = base.iloc[:len(cells)].copy().reset_index(drop=True)
    df["question"] = df["question"].astype(object)
    for i, (_, image, question, _) in enumerate(cells):
        df.loc[i, "image"] = image
        if question is not None:
            df.loc[i, "question"] = question
    dup = [i for i, c in enumerate(cells) if c[0] == "duplicate index"][0]
    df.loc[dup, "index"] = df.loc[0, "index"]
    df.to_csv(root / f"{VQA}.tsv", sep="\t", index=False)
    return root


def test_bad_samples(tmp_path, tiny_checkpoint, engine, bad_root):
    cells = _bad_cells()
    result = run(_opts(tmp_path, tiny_checkpoint, bad_root, run_name="bad"), engine=engine)   # the run goes on
    d = result.run_dir
    samples = _samples(d, VQA)
    merged = [json.loads(x) for x in (d / "predictions" / f"{VQA}.jsonl").read_text().splitlines()]
    pred = pd.read_excel(d / f"MiniMonkey_{VQA}.xlsx")
    assert len(samples) == len(merged) == len(pred) == len(cells)          # nothing dropped
    expect_failed = 0
    for i, (kind, _, _, expect) in enumerate(cells):
        row, record = samples.iloc[i], merged[i]
        if expect == "ok":
            assert str(row["failed"]) == "False" and not record["failed"], (kind, row["reason"])
        else:
            expect_failed += 1
            assert str(row["failed"]) == "True" and record["failed"], kind
            assert expect in row["reason"] and expect in record["reason"], (kind, row["reason"])
            assert float(row["score"]) == 0.0, kind                               # never scored as an answer
            assert pred.loc[i, "prediction"] == writers.FAILED_PREDICTION, kind
    assert result.outcomes[VQA].failed == expect_failed
    assert json.loads((d / "run.json").read_text())["results"][VQA]["failed"] == expect_failed
    # EXIF: faithful to Image.open(...).convert('RGB'), no rotation; the stored 40x20 stays 40x20
    exif_row = [i for i, c in enumerate(cells) if c[0] == "EXIF rotated"][0]
    with Image.open(samples.iloc[exif_row]["image_path"]) as im:
        assert im.size == (40, 20)
    # a rerun retries only the failed ones (the duplicate is never inferred), and they fail the same way
    counting = CountingEngine(engine)
    again = run(_opts(tmp_path, tiny_checkpoint, bad_root, run_name="bad"), engine=counting)
    assert again.outcomes[VQA].failed == expect_failed
    assert counting.samples <= expect_failed - 1


def test_max_image_pixels_override(tmp_path, tiny_checkpoint, engine):
    root = tmp_path / "LMUData"
    write_sample_tsvs(root, datasets=[VQA], n=2)
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(RunError, match="all 2 samples failed.*--max-image-pixels"):   # every sample over it
        run(_opts(tmp_path, tiny_checkpoint, root, run_name="px", limit=2, max_image_pixels=500), engine=engine)
    assert Image.MAX_IMAGE_PIXELS == limit_before                              # restored after the run
    records = part_lines(tmp_path / "results" / "px", VQA)
    assert len(records) == 2 and all(r["failed"] and "--max-image-pixels" in r["reason"] for r in records)
    result = run(_opts(tmp_path, tiny_checkpoint, root, run_name="px", limit=2, max_image_pixels=0), engine=engine)
    assert result.outcomes[VQA].failed == 0
    with pytest.raises(RunError, match="max-image-pixels"):
        run(_opts(tmp_path, tiny_checkpoint, root, run_name="px2", max_image_pixels=-1), engine=engine)


def test_mcq_nan_options_and_hint(tmp_path, tiny_checkpoint, engine):
    root = tmp_path / "LMUData"
    df = sample_rows(MCQ, n=3)
    df["hint"] = [math.nan, "a hint", 42]
    df.loc[0, "C"] = math.nan
    df.loc[1, "D"] = math.nan
    df.to_csv(root.mkdir() or root / f"{MCQ}.tsv", sep="\t", index=False)
    result = run(_opts(tmp_path, tiny_checkpoint, root, datasets=[MCQ], run_name="mcq"), engine=engine)
    assert result.outcomes[MCQ].failed == 0 and result.outcomes[MCQ].rows == 3


def _cli(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return rc, err


def _one_line(rc, err, needle):
    assert rc == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err


def _run_argv(ckpt, root, work, *extra, data=VQA, name="r"):
    return ["run", "--model", "MiniMonkey", "--model-path", ckpt, "--data", data, "--data-root", root,
            "--work-dir", work, "--run-name", name, "--tiles", FAST_TILES, "--max-new-tokens", 4, "--limit", 1,
            "--device", "cpu", *extra]


def test_bad_data_files(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    monkeypatch.setenv("MINIMONKEY_NO_PROGRESS", "1")
    root = tmp_path / "LMUData"
    write_sample_tsvs(root, datasets=[VQA], n=2)
    work = tmp_path / "results"

    short = tmp_path / "short"
    df = sample_rows(VQA, n=2)
    df.loc[1, "image"] = "not-an-index"
    df.to_csv(short.mkdir() or short / f"{VQA}.tsv", sep="\t", index=False)
    _one_line(*_cli(_run_argv(tiny_checkpoint, short, work), capsys), "image reference")

    _one_line(*_cli(_run_argv(tiny_checkpoint, tmp_path / "empty", work), capsys), "not found")

    cols = tmp_path / "cols"
    sample_rows(VQA, n=2).drop(columns=["answer"]).to_csv(cols.mkdir() or cols / f"{VQA}.tsv", sep="\t", index=False)
    _one_line(*_cli(_run_argv(tiny_checkpoint, cols, work), capsys), "missing column(s) answer")

    _one_line(*_cli(_run_argv(tiny_checkpoint, root, work, data="NoSuchBench"), capsys), "unknown dataset")

    (tmp_path / "afile").write_text("x")
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "afile"), capsys), "cannot write the run folder")

    assert _cli(_run_argv(tiny_checkpoint, root, work), capsys)[0] == 0
    run_json = work / "r" / "run.json"
    good = run_json.read_text()
    run_json.write_text("{not json")
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, work), capsys), "unreadable")
    run_json.write_text(good)
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, work, "--tiles", "1-1/1-1"), capsys), "tiles")
    _one_line(*_cli(["run", "--model", "InternVL2-2B", *_run_argv(tiny_checkpoint, root, work)[3:], "--tiles", "1-2"],
                    capsys), "model=")
    run_json.unlink()
    _one_line(*_cli(_run_argv(tiny_checkpoint, root, work), capsys), "no run.json")
    assert _cli(_run_argv(tiny_checkpoint, root, work, "--overwrite"), capsys)[0] == 0


def test_bad_checkpoints_through_run(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    from safetensors.torch import load_file

    from minimonkey_eval.models.tiny_checkpoint import save_sharded

    monkeypatch.setenv("MINIMONKEY_NO_PROGRESS", "1")
    root = tmp_path / "LMUData"
    write_sample_tsvs(root, datasets=[VQA], n=1)

    def case(name, mutate, needle):
        ckpt = shutil.copytree(tiny_checkpoint, tmp_path / name)
        mutate(ckpt)
        _one_line(*_cli(_run_argv(ckpt, root, tmp_path / "w", name=name), capsys), needle)

    _one_line(*_cli(_run_argv(tmp_path / "nope", root, tmp_path / "w"), capsys), "model directory not found")

    def shard(ckpt):
        sd = load_file(str(ckpt / "model.safetensors"))
        (ckpt / "model.safetensors").unlink()
        save_sharded(sd, ckpt, shards=2)
        next(iter(ckpt.glob("model-00002-*.safetensors"))).unlink()

    def config(**llm):
        def mutate(ckpt):
            cfg = json.loads((ckpt / "config.json").read_text())
            cfg["llm_config"].update(llm)
            (ckpt / "config.json").write_text(json.dumps(cfg))
        return mutate

    case("shard", shard, "model-00002-of-00002.safetensors")
    case("vocab", config(vocab_size=500), "tokenizer has")
    case("llm", config(architectures=["MistralForCausalLM"]), "MistralForCausalLM")
    case("pickle", lambda c: (c / "model.safetensors").rename(c / "pytorch_model.bin"), "pickle")


class OOMEngine:
    """Fake device: CUDA out-of-memory for batches over ``max_batch`` samples or a sample over ``max_tiles`` tiles."""

    def __init__(self, engine, max_batch=1, max_tiles=1):
        self._engine, self.max_batch, self.max_tiles = engine, max_batch, max_tiles
        self.calls: list[tuple[int, int]] = []     # (batch size, most tiles of a sample)

    def generate_prepared(self, batch, **kw):
        self.calls.append((len(batch), max(p.num_tiles for p in batch)))
        if len(batch) > self.max_batch or max(p.num_tiles for p in batch) > self.max_tiles:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake)")
        return self._engine.generate_prepared(batch, **kw)

    def __getattr__(self, name):
        return getattr(self._engine, name)


def test_oom_splits_then_fewer_tiles(tmp_path, tiny_checkpoint, engine):
    root = tmp_path / "LMUData"
    write_sample_tsvs(root, datasets=[VQA], n=4)
    reference = run(_opts(tmp_path, tiny_checkpoint, root, run_name="ref", tiles="1-1/1-1", limit=4), engine=engine)
    # batch of 4 -> halves -> singles; each single OOMs at 4-4/2-2 (>= 5 tiles), fits at 1-1/1-1 (one tile)
    oom = OOMEngine(engine, max_batch=1, max_tiles=1)
    result = run(_opts(tmp_path, tiny_checkpoint, root, run_name="oom", tiles="4-4/2-2", limit=4), engine=oom)
    sizes = [n for n, _ in oom.calls]
    assert sizes[:3] == [4, 2, 1] and sizes.count(4) == 1 and sizes.count(2) == 2
    assert all(tiles >= 5 for n, tiles in oom.calls if n > 1) and (1, 1) in oom.calls
    samples = _samples(result.run_dir, VQA)
    assert set(samples["failed"].astype(str)) == {"False"} and len(samples) == 4
    assert all(r == "oom: retried with tiles 1-1/1-1" for r in samples["reason"])
    assert [p for _, p, _ in merged_predictions(result.run_dir, VQA)] == \
        [p for _, p, _ in merged_predictions(reference.run_dir, VQA)]
    # still OOM with one tile: a failed sample with the reason, the run goes on
    never = OOMEngine(engine, max_batch=0, max_tiles=0)
    with pytest.raises(RunError, match="all 4 samples failed.*oom even with the fewest tiles"):
        run(_opts(tmp_path, tiny_checkpoint, root, run_name="oom2", limit=4), engine=never)
    assert len(part_lines(tmp_path / "results" / "oom2", VQA)) == 4
    from minimonkey_eval.models.settings import Tiling

    assert pipeline.fewer_tiles(Tiling("dynamic", 1, 6, None, None)).describe() == "1-3"
    assert pipeline.fewer_tiles(Tiling("msac", 4, 4, 2, 2)).describe() == "2-2/1-1"
    assert pipeline.fewer_tiles(Tiling("msac", 1, 1, 1, 1)) is None


class FakeRank(DistContext):
    """A rank of a torchrun world, without torch.distributed (barrier/gather are no-ops)."""

    def __init__(self, rank, world):
        super().__init__(rank, world, rank, None)


def test_failed_rank_refuses_then_merges(tmp_path, tiny_checkpoint, engine):
    root = tmp_path / "LMUData"
    write_sample_tsvs(root, datasets=[VQA], n=5)
    single = run(_opts(tmp_path, tiny_checkpoint, root, run_name="single", limit=5), engine=engine)
    # rank 1 of 2 died before writing anything: rank 0 must not score a partial dataset
    with pytest.raises(RunError, match="predictions missing"):
        run(_opts(tmp_path, tiny_checkpoint, root, run_name="dp", limit=5), engine=engine, ctx=FakeRank(0, 2))
    d = tmp_path / "results" / "dp"
    assert not (d / f"{VQA}_score.csv").exists() and not (d / "predictions" / f"{VQA}.jsonl").exists()
    # rank 1 ran, then died mid-append: a corrupt line and a torn tail in its part file
    run(_opts(tmp_path, tiny_checkpoint, root, run_name="dp", limit=5), engine=engine, ctx=FakeRank(1, 2))
    part1 = d / "predictions" / f"{VQA}.part1.jsonl"
    lines = part1.read_bytes().splitlines(keepends=True)
    part1.write_bytes(lines[0] + b'{"index": 3, "predic\n' + b'{"index": 3, "prediction": "half')
    run(_opts(tmp_path, tiny_checkpoint, root, run_name="dp", limit=5), engine=engine, ctx=FakeRank(1, 2))
    result = run(_opts(tmp_path, tiny_checkpoint, root, run_name="dp", limit=5), engine=engine, ctx=FakeRank(0, 2))
    assert merged_predictions(result.run_dir, VQA) == merged_predictions(single.run_dir, VQA)
    from minimonkey_eval.eval.run.store import PredictionStore

    assert sorted(int(k) for k in PredictionStore(d, VQA).load()) == list(range(5))


def test_lock_held_is_one_line(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    monkeypatch.setenv("MINIMONKEY_NO_PROGRESS", "1")
    root = tmp_path / "LMUData"
    write_sample_tsvs(root, datasets=[VQA], n=1)
    with RunLock(tmp_path / "w" / "r"):
        _one_line(*_cli(_run_argv(tiny_checkpoint, root, tmp_path / "w"), capsys), "another run")


@pytest.mark.slow
def test_sigint_stops_cleanly(tmp_path, tiny_checkpoint, warm_cli):
    root = tmp_path / "LMUData"
    write_sample_tsvs(root, datasets=[VQA], n=10)
    work = tmp_path / "w"
    args = cli_args("run", "--model", "MiniMonkey", "--model-path", tiny_checkpoint, "--data", VQA,
                    "--data-root", root, "--work-dir", work, "--run-name", "int", "--tiles", "2-4/1-2",
                    "--max-new-tokens", 6, "--batch-size", 1, "--dtype", "fp32", "--device", "cpu")
    d = work / "int"
    env, reached, _ = gated_env(tmp_path, 2)   # the run blocks after its 2nd fsync'd prediction, staging busy
    stopped = signal_at_gate(warm_cli, args, env, reached, tmp_path / "int.log", sig=signal.SIGINT)
    assert stopped.returncode == 130, stopped.output
    assert "interrupted" in stopped.output and "Traceback" not in stopped.output
    done = part_lines(d, VQA)
    assert len(done) == 2
    assert (d / ".lock").read_text() == ""                         # released (owner pid cleared)
    RunLock(d).acquire().release()                                 # and free
    rerun = warm_run(warm_cli, args, tmp_path / "rerun.log")
    assert rerun.returncode == 0, rerun.output
    assert f"(10 rows, {10 - len(done)} inferred now)" in rerun.output
    assert sorted(r["index"] for r in part_lines(d, VQA)) == list(range(10))
