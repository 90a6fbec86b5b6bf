"""Fast path (bucketed batches, DataLoader workers, SDPA) vs the VLMEvalKit-style reference mode (batch 1, eager,
vlmeval's own tiling), on the tiny random checkpoint, CPU. Small tile budgets keep prompts ~1k tokens."""
from __future__ import annotations

import importlib
import pickle

import pytest
import torch
from PIL import Image

from minimonkey_eval.models import Tiling, msac_tiling
from minimonkey_eval.models.pipeline import (CPU_AUTO_BATCH_SIZE, Preparer, PreparedBatch, SamplePreparationError,
                                             auto_batch_size, collate, estimate_tiles, estimate_tokens, generate_fast,
                                             generate_stream, plan_batches, run_with_backoff)
from minimonkey_eval.reference import (attention_implementation, reference_generate, reference_preprocessor,
                                       reference_tiles)
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
    fast = generate_fast(engine, samples, tiling=TILING, batch_size=3, num_workers=2, max_new_tokens=MAX_NEW)
    assert fast == reference_answers
    assert len(set(reference_answers)) > 1  # the tiny model's answers depend on the input


def test_normalize_on_device_fast_path_equals_reference(engine, samples, reference_answers):
    """uint8 tiles from the workers, normalised by the engine: the reference mode's answers (float32 tiles)."""
    engine.normalize_on_device = True
    try:
        fast = generate_fast(engine, samples, tiling=TILING, batch_size=3, num_workers=1, max_new_tokens=MAX_NEW)
    finally:
        engine.normalize_on_device = False
    assert fast == reference_answers


def test_stream_yields_every_index_once_and_workers_agree(engine, samples, reference_answers):
    in_process = list(generate_stream(engine, samples, tiling=TILING, batch_size=4, num_workers=0,
                                      max_new_tokens=MAX_NEW))
    assert sorted(i for i, _ in in_process) == list(range(len(samples)))
    with_workers = dict(generate_stream(engine, samples, tiling=TILING, batch_size=4, num_workers=2,
                                        max_new_tokens=MAX_NEW))
    assert dict(in_process) == with_workers
    assert [with_workers[i] for i in range(len(samples))] == reference_answers
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
    preparer = Preparer.from_engine(engine)
    for images, question in samples:
        assert estimate_tokens(preparer, images, question, TILING) == len(engine.prepare(images, question,
                                                                                         TILING).input_ids)


def test_bucketing_sorts_longest_first():
    lengths = [5, 900, 40, 900, 7, 300, 1]
    batches = plan_batches(lengths, 3)
    assert batches == [[1, 3, 5], [2, 4, 0], [6]]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    with pytest.raises(ValueError):
        plan_batches(lengths, 0)


def test_auto_batch_size(engine):
    assert auto_batch_size(engine, 10_000, 512) == CPU_AUTO_BATCH_SIZE
    big = auto_batch_size(engine, 1_000, 64, free_bytes=80 << 30)
    small = auto_batch_size(engine, 10_000, 64, free_bytes=80 << 30)
    assert isinstance(big, int) and isinstance(small, int) and 1 <= small <= big
    assert auto_batch_size(engine, 10_000, 64, free_bytes=0) == 1
    with pytest.raises(ValueError):
        list(generate_stream(engine, [([], "hi")], batch_size=0))


def test_preparer_pickles_and_matches_engine(engine, samples):
    preparer = pickle.loads(pickle.dumps(Preparer.from_engine(engine)))
    images, question = samples[1]
    ours, theirs = preparer(images, question, TILING), engine.prepare(images, question, TILING)
    assert ours.input_ids == theirs.input_ids and torch.equal(ours.pixel_values, theirs.pixel_values)
    assert ours.first_scale_tokens == theirs.first_scale_tokens

    class Unpicklable:
        def __reduce__(self):
            raise TypeError("no pickling")

    broken = Preparer.from_engine(engine)
    broken.tokenizer = Unpicklable()
    rebuilt = pickle.loads(pickle.dumps(broken))  # falls back to rebuilding from the checkpoint path
    assert rebuilt.tokenizer.encode("hello <img>") == engine.tokenizer.encode("hello <img>")


def test_collate_returns_a_list_with_pin_memory(engine, samples):
    prepared = engine.prepare(*samples[0], tiling=TILING)
    batch = collate([(0, prepared)])
    assert isinstance(batch, list) and isinstance(batch, PreparedBatch) and batch[0][0] == 0
    assert hasattr(batch, "pin_memory")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_images_name_the_sample(engine, samples, tmp_path, num_workers):
    good = samples[0][0][0]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(good, "rb").read()[:1500])   # header readable (size known), pixels not
    bad = samples[:2] + [([str(truncated)], "what?")]
    with pytest.raises(SamplePreparationError, match="sample 2 .*truncated.jpg.*OSError"):
        list(generate_stream(engine, bad, tiling=TILING, batch_size=1, num_workers=num_workers, max_new_tokens=2))
    with pytest.raises(SamplePreparationError, match="sample 0 .*missing.jpg"):
        list(generate_stream(engine, [([str(tmp_path / "missing.jpg")], "q")], tiling=TILING))


def test_out_of_memory_splits_the_batch(engine, samples):
    seen = []

    def small_device(engine_, prepared, **options):
        seen.append(len(prepared))
        if len(prepared) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return [f"{len(p.input_ids)}" for p in prepared]

    prepared = [engine.prepare(images, question, TILING) for images, question in samples[:5]]
    assert run_with_backoff(small_device, engine, prepared) == [f"{len(p.input_ids)}" for p in prepared]
    assert seen == [5, 2, 3, 1, 2]
    streamed = dict(generate_stream(engine, samples, tiling=TILING, batch_size=6, run_batch=small_device))
    assert sorted(streamed) == list(range(len(samples)))
    with pytest.raises(RuntimeError, match="not memory"):
        run_with_backoff(lambda *a, **k: (_ for _ in ()).throw(RuntimeError("not memory")), engine, prepared)
