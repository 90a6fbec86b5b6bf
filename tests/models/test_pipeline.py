"""The one pipeline (staging threads, windowed length bucketing, auto batch size, out-of-memory backoff) vs the
VLMEvalKit-style reference mode (batch 1, eager, vlmeval's own tiling, no overlap), on the tiny random checkpoint,
CPU. Small tile budgets keep prompts ~1k tokens."""
from __future__ import annotations

import importlib

import pytest
import torch
from PIL import Image

from minimonkey_eval.eval.backends.reference import (
    attention_implementation,
    reference_generate,
    reference_preprocessor,
    reference_tiles,
)
from minimonkey_eval.models import Tiling, msac_tiling
from minimonkey_eval.models.pipeline import Pipeline, SamplePreparationError, generate_stream
from minimonkey_eval.models.planning import (
    CPU_AUTO_BATCH_SIZE,
    Job,
    auto_batch_size,
    estimate_tiles,
    estimate_tokens,
    plan_batches,
)
from minimonkey_eval.models.tiling import dynamic_tiling

TILING = Tiling.msac(1, 2, 1, 2)   # <= 5 tiles per image: fast on 2 CPU cores, still two scales + thumbnail
SIZES = [(300, 100), (800, 600), (640, 480), (600, 1400), (200, 700), (500, 500)]
QUESTIONS = ["what is written here?", "Is there a dog in this image?", "What is the total amount on the invoice page?",
             "title?", "Which option is correct?\nA. red\nB. blue", "How many people are there in the picture?"]
MAX_NEW = 12


def _vlmeval_available() -> bool:
    try:
        importlib.import_module("vlmeval.vlm.minimonkey")
    except Exception:  # noqa: BLE001
        return False
    return True


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# `tiny_checkpoint` and `engine` (fp32, CPU, session-wide) come from tests/conftest.py.


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pipeline_images")
    gen = torch.Generator().manual_seed(0)
    out = []
    for k, ((w, h), question) in enumerate(zip(SIZES, QUESTIONS)):
        pixels = torch.randint(0, 256, (h, w, 3), generator=gen, dtype=torch.uint8).numpy()
        path = directory / f"img{k}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        out.append(([str(path)], question))
    return out


@pytest.fixture(scope="module")
def reference_answers(engine, samples):
    return reference_generate(engine, samples, TILING, max_new_tokens=MAX_NEW)


def test_reference_equals_fast_path(engine, samples, reference_answers):
    if _vlmeval_available():
        assert reference_preprocessor(TILING).startswith("vlmeval.vlm.minimonkey")
    fast = engine.generate(samples, tiling=TILING, batch_size=3, threads=2, max_new_tokens=MAX_NEW)
    assert fast == reference_answers
    assert len(set(reference_answers)) > 1  # the tiny model's answers depend on the input


def test_normalize_on_device_fast_path_equals_reference(engine, samples, reference_answers):
    """uint8 tiles from the staging threads, normalised by the engine: the reference mode's answers (vlmeval's
    float32 tiles, an independent implementation)."""
    engine.normalize_on_device = True
    try:
        fast = engine.generate(samples, tiling=TILING, batch_size=3, threads=1, max_new_tokens=MAX_NEW)
    finally:
        engine.normalize_on_device = False
    assert fast == reference_answers


def test_stream_yields_every_index_once_longest_first(engine, samples, reference_answers):
    streamed = list(generate_stream(engine, samples, tiling=TILING, batch_size=4, threads=3, max_new_tokens=MAX_NEW))
    assert sorted(i for i, _ in streamed) == list(range(len(samples)))
    tokens = [estimate_tokens(engine, images, question, TILING) for images, question in samples]
    assert [tokens[i] for i, _ in streamed] == sorted(tokens, reverse=True)
    assert [dict(streamed)[i] for i in range(len(samples))] == reference_answers
    auto = engine.generate(samples, tiling=TILING, batch_size="auto", max_new_tokens=MAX_NEW)
    assert auto == reference_answers
    assert list(generate_stream(engine, [], tiling=TILING)) == []


def test_reference_tiles_match_engine_tiler(samples):
    path = samples[3][0][0]
    ours = msac_tiling(path, TILING.min_num, TILING.max_num, TILING.min_num2, TILING.max_num2)
    ref = reference_tiles(path, TILING)
    assert torch.equal(ref.pixel_values, ours.pixel_values)
    assert ref.first_scale_tiles == ours.first_scale_tiles
    pil = reference_tiles(Image.open(path).convert("RGB"), TILING)  # PIL input goes through a lossless PNG
    assert torch.equal(pil.pixel_values, ours.pixel_values)


def test_eager_switch_is_honoured_and_restored(engine, samples, monkeypatch):
    import transformers.models.internvl.modeling_internvl as internvl
    import transformers.models.llama.modeling_llama as llama

    calls = {"llm": 0, "vit": 0}
    for module, key in ((llama, "llm"), (internvl, "vit")):
        original = module.eager_attention_forward

        def counting(*args, _original=original, _key=key, **kwargs):
            calls[_key] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, "eager_attention_forward", counting)
    cfg = engine.model.config
    before = (cfg._attn_implementation, cfg.text_config._attn_implementation, cfg.vision_config._attn_implementation)
    prepared = engine.prepare(*samples[0], tiling=TILING)
    with attention_implementation(engine.model, "eager"):
        assert cfg.text_config._attn_implementation == cfg.vision_config._attn_implementation == "eager"
        engine.generate_prepared([prepared], max_new_tokens=2)
    assert calls["llm"] > 0 and calls["vit"] > 0
    after = (cfg._attn_implementation, cfg.text_config._attn_implementation, cfg.vision_config._attn_implementation)
    assert after == before == ("sdpa", "sdpa", "sdpa")
    calls.update(llm=0, vit=0)
    engine.generate_prepared([prepared], max_new_tokens=2)
    assert calls == {"llm": 0, "vit": 0}


@pytest.mark.parametrize("tiling", [Tiling.msac(1, 2, 1, 2), Tiling.msac(9, 24, 5, 8), Tiling.msac(14, 23, 5, 15),
                                    Tiling.msac(4, 12, 3, 7), Tiling.msac(5, 11, 2, 6), Tiling.dynamic(6),
                                    Tiling.dynamic(12, min_num=4)])
def test_estimate_tiles_is_exact(tiling, monkeypatch):
    """The estimate counts what msac_tiling/dynamic_tiling keep; their pixel work is stubbed out (counts only)."""
    from minimonkey_eval.models import tiling as tiling_module

    monkeypatch.setattr(tiling_module, "_grid_crops", lambda image, grid, size: [object()] * (grid[0] * grid[1]))
    monkeypatch.setattr(tiling_module, "_thumbnail", lambda image, size: object())
    monkeypatch.setattr(tiling_module, "_tensors", lambda images, normalize=True: torch.empty(len(images), 1))
    for size in [(448, 448), (300, 100), (100, 300), (1000, 1000), (700, 130), (50, 800), (1700, 2300), (2000, 2600),
                 (896, 448), (1344, 448), (800, 600), (640, 480), (3000, 200), (20, 20)]:
        image = Image.new("RGB", size)
        actual = (msac_tiling(image, tiling.min_num, tiling.max_num, tiling.min_num2, tiling.max_num2)
                  if tiling.kind == "msac" else dynamic_tiling(image, tiling.max_num, tiling.min_num))
        assert estimate_tiles(size, tiling) == actual.pixel_values.shape[0], (size, tiling)


def test_estimate_tokens_is_exact(engine, samples):
    for images, question in samples:
        assert estimate_tokens(engine, images, question, TILING) == len(engine.prepare(images, question,
                                                                                       TILING).input_ids)


def test_bucketing_sorts_longest_first():
    lengths = [5, 900, 40, 900, 7, 300, 1]
    batches = plan_batches(lengths, 3)
    assert batches == [[1, 3, 5], [2, 4, 0], [6]]
    assert plan_batches(lengths, 3, bucket=False) == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan_batches(lengths, lambda longest: 1 if longest > 100 else 4) == [[1], [3], [5], [2, 4, 0, 6]]
    with pytest.raises(ValueError):
        plan_batches(lengths, 0)


class FakeEngine:
    """The engine's staging half for real, a device that answers ``len(input_ids)`` and runs out of memory for
    more than ``max_batch`` samples or ``max_tiles`` tiles in one sample."""

    def __init__(self, engine, max_batch=2, max_tiles=99):
        self._engine, self.max_batch, self.max_tiles, self.seen = engine, max_batch, max_tiles, []

    def generate_prepared(self, batch, **options):
        self.seen.append(len(batch))
        if len(batch) > self.max_batch or max(p.num_tiles for p in batch) > self.max_tiles:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return [f"{len(p.input_ids)}" for p in batch]

    def __getattr__(self, name):
        return getattr(self._engine, name)


def _jobs(samples, tiling=TILING):
    return lambda i: Job(key=i, images=samples[i][0], question=samples[i][1], tiling=tiling, max_new_tokens=4)


def test_out_of_memory_splits_the_batch_then_fewer_tiles(engine, samples):
    fake = FakeEngine(engine, max_batch=2)
    (batch,) = list(Pipeline(fake, batch_size=5, window=5, threads=2).run(range(5), _jobs(samples)))
    assert fake.seen == [5, 2, 3, 1, 2]
    assert all(j.answer == f"{len(engine.prepare(*samples[j.key], TILING).input_ids)}" for j in batch)
    # one sample over the tile budget: re-tiled with the maxima halved (4-4/2-2 -> 2-2/1-1 -> 1-1/1-1)
    fake = FakeEngine(engine, max_batch=1, max_tiles=1)
    (batch,) = list(Pipeline(fake, batch_size=1, window=1).run([0], _jobs(samples, Tiling.msac(4, 4, 2, 2))))
    assert batch[0].error is None and batch[0].note == "oom: retried with tiles 1-1/1-1"
    fake = FakeEngine(engine, max_batch=1, max_tiles=0)
    (batch,) = list(Pipeline(fake, batch_size=1, window=1).run([0], _jobs(samples)))
    assert batch[0].failed_at == "generate" and isinstance(batch[0].error, torch.OutOfMemoryError)


def test_other_errors_are_retried_one_by_one(engine, samples, tmp_path):
    """A batch failing for another reason is answered one sample at a time; failures stay with their sample."""
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(samples[0][0][0], "rb").read()[:1500])   # header readable (size known), pixels not
    bad = samples[:3] + [([str(truncated)], "what?"), ([str(tmp_path / "missing.jpg")], "q")]
    jobs = [j for batch in Pipeline(engine, batch_size=4, threads=2).run(range(5), _jobs(bad)) for j in batch]
    by_key = {j.key: j for j in jobs}
    assert sorted(by_key) == list(range(5))
    assert by_key[3].failed_at == "prepare" and isinstance(by_key[3].error, OSError)
    assert by_key[4].failed_at == "prepare" and "missing.jpg" in str(by_key[4].error)
    assert all(by_key[i].error is None and by_key[i].answer is not None for i in range(3))
    with pytest.raises(SamplePreparationError, match="sample 3 .*truncated.jpg.*OSError"):
        list(generate_stream(engine, bad[:4], tiling=TILING, batch_size=1, max_new_tokens=2))


def test_auto_batch_size(engine):
    assert auto_batch_size(engine, 10_000, 512) == CPU_AUTO_BATCH_SIZE
    big = auto_batch_size(engine, 1_000, 64, free_bytes=80 << 30)
    small = auto_batch_size(engine, 10_000, 64, free_bytes=80 << 30)
    assert isinstance(big, int) and isinstance(small, int) and 1 <= small <= big
    assert auto_batch_size(engine, 10_000, 64, free_bytes=0) == 1
    with pytest.raises(ValueError):
        Pipeline(engine, batch_size=0)
