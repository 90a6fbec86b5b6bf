"""Compute each image once (models/reuse.py): sharing keys, the planner keeping a group together, and on the tiny
fp32 checkpoint the same greedy answers with reuse on and off, with the work actually done counted."""
from __future__ import annotations

import shutil

import pytest
import torch
from helpers.runner_utils import VisionKeyRecorder
from PIL import Image

from minimonkey_eval.models import ScmConfig, Tiling
from minimonkey_eval.models import engine as engine_module
from minimonkey_eval.models.pipeline import Pipeline, generate_stream
from minimonkey_eval.models.planning import Job, plan_batches
from minimonkey_eval.models.reuse import (
    FeatureCache,
    ReuseStats,
    common_prefix,
    generate_shared,
    image_content_key,
    plan_shared,
    prefix_groups,
    share_key,
    vision_key,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ONE_TILE = Tiling.dynamic(1)          # 256 image tokens: the tiny model's answers then depend on the question
SCM_TILING = Tiling.msac(1, 2, 1, 2)  # two scales (SCM needs a first-scale block), <= 5 tiles
SIZES = [(640, 480), (200, 700), (300, 100)]
QUESTIONS = ["How many?", "Read the sign, please.", "Describe the image in detail.",
             "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"]
MAX_NEW = 6


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reuse_images")
    gen = torch.Generator().manual_seed(0)
    paths = []
    for k, (w, h) in enumerate(SIZES):
        pixels = torch.randint(0, 256, (h, w, 3), generator=gen, dtype=torch.uint8).numpy()
        path = directory / f"img{k}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def samples(image_files):
    """Two images x four questions, interleaved (the input order does not group them), and a third image asked once."""
    out = [([image_files[k]], q) for q in QUESTIONS for k in (0, 1)]
    return out + [([image_files[2]], QUESTIONS[0])]


# ---------------------------------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------------------------------
def test_keys_by_content_hash(image_files, tmp_path):
    copy = tmp_path / "copy-of-img0.png"
    shutil.copyfile(image_files[0], copy)
    tiling = ONE_TILE
    assert image_content_key(str(copy)) == image_content_key(image_files[0])
    assert vision_key([str(copy)], tiling) == vision_key([image_files[0]], tiling)
    assert vision_key([image_files[1]], tiling) != vision_key([image_files[0]], tiling)
    assert vision_key([image_files[0]], Tiling.dynamic(6)) != vision_key([image_files[0]], tiling)
    assert vision_key([image_files[0]], SCM_TILING) != vision_key([image_files[0]], Tiling.msac(1, 2, 1, 3))
    # one changed byte (the file's mtime moves too: the hash cache must not return the old hash)
    changed = tmp_path / "changed.png"
    shutil.copyfile(image_files[0], changed)
    assert image_content_key(str(changed)) == image_content_key(image_files[0])
    data = bytearray(changed.read_bytes())
    data[-20] ^= 0xFF
    changed.write_bytes(bytes(data))
    assert image_content_key(str(changed)) != image_content_key(image_files[0])
    # PIL images: mode + size + pixels, not the object
    a, b = Image.open(image_files[0]).convert("RGB"), Image.open(image_files[0]).convert("RGB")
    assert a is not b and image_content_key(a) == image_content_key(b)
    assert image_content_key(a) != image_content_key(a.convert("L"))
    assert image_content_key(a) != image_content_key(Image.open(image_files[1]).convert("RGB"))
    p1, p2 = Image.new("P", (8, 8)), Image.new("P", (8, 8))
    p1.putpalette([0, 0, 0] * 256)
    p2.putpalette([255, 0, 0] * 256)
    assert image_content_key(p1) != image_content_key(p2)     # same indices, other colours
    # the order of a sample's images matters (the first one may be tiled differently)
    assert vision_key(image_files[:2], SCM_TILING) != vision_key(image_files[1::-1], SCM_TILING)


def test_keys_by_hint_and_position(image_files):
    tiling = ONE_TILE
    # an explicit key replaces hashing (a caller that knows which rows share an image)
    assert vision_key(["/no/such/file.jpg"], tiling, hint="img-7") == vision_key(["/other.jpg"], tiling, hint="img-7")
    assert vision_key([image_files[0]], tiling, hint="img-7") != vision_key([image_files[0]], tiling, hint="img-8")
    # the image's place in the prompt: no placeholder == a leading '<image>'; text before the image differs
    base = share_key([image_files[0]], "What?", tiling)
    assert share_key([image_files[0]], "<image>\nWho?", tiling) == base
    assert share_key([image_files[0]], "Look: <image> What?", tiling) != base
    assert share_key([], "text only", tiling) is None


# ---------------------------------------------------------------------------------------------------------------------
# Planner
# ---------------------------------------------------------------------------------------------------------------------
def test_planner_keeps_a_group_in_one_batch():
    lengths = [500, 900, 510, 905, 300, 505, 900, 100]
    groups = ["a", "b", "a", "b", None, "a", None, None]
    batches = plan_batches(lengths, 3, groups=groups)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert [1, 3] in [sorted(b)[:2] for b in batches if 1 in b]
    for key in ("a", "b"):
        members = [i for i, g in enumerate(groups) if g == key]
        assert sum(1 for b in batches if set(members) & set(b)) == 1, (key, batches)
    assert batches[0][:2] == [3, 1]                 # the longest group first, its members longest first
    # without groups (or with none sharing): the plain longest-first cut, unchanged
    assert plan_batches(lengths, 3, groups=[None] * 8) == plan_batches(lengths, 3)
    assert plan_batches([5, 900, 40, 900, 7, 300, 1], 3, groups=list("abcdefg")) == [[1, 3, 5], [2, 4, 0], [6]]
    # a group larger than the batch size: consecutive batches of balanced parts (each part still shares)
    lengths = [10] * 7 + [50, 60]
    batches = plan_batches(lengths, 3, groups=["g"] * 7 + [None, None])
    assert batches == [[8, 7], [0, 1, 2], [3, 4], [5, 6]]
    # ... and a part's room is topped up by a later group that fits
    batches = plan_batches([10] * 4 + [5], 3, groups=["g"] * 4 + [None])
    assert batches == [[0, 1, 4], [2, 3]]
    # auto batch size sees the group's longest member
    assert plan_batches([10, 1000, 10], lambda longest: 1 if longest > 100 else 3, groups=["x", "y", "x"]) == \
        [[1], [0, 2]]


def test_pipeline_plans_same_image_jobs_together(engine, samples, tmp_path):
    """Through the real pipeline (describe -> keys -> plan -> stage): the batches the engine sees; a copy of an
    image under another path joins its group; a job with an explicit image_key groups by it."""
    copy = tmp_path / "same-bytes.png"
    shutil.copyfile(samples[0][0][0], copy)
    jobs_in = samples + [([str(copy)], "Is it the same?")]


    recorder = VisionKeyRecorder(engine)

    def describe(i):
        images, question = jobs_in[i]
        return Job(key=i, images=list(images), question=question, tiling=ONE_TILE, max_new_tokens=2)

    list(Pipeline(recorder, batch_size=5, threads=2).run(range(len(jobs_in)), describe))
    seen = [key for batch in recorder.batches for key in batch]
    assert len(seen) == len(jobs_in)
    counts = {key: seen.count(key) for key in set(seen)}
    assert sorted(counts.values()) == [1, 4, 5]        # image 0 (4 + its copy), image 1 (4), image 2 (1)
    for batch in recorder.batches:
        for key in set(batch):
            assert batch.count(key) == counts[key]     # every group whole in one batch
    # explicit keys: the caller says jobs 0 and 1 share (a hint is trusted as given)
    recorder.batches = []

    def hinted(i):
        return Job(key=i, images=[samples[i][0][0]], question=samples[i][1], tiling=ONE_TILE, max_new_tokens=2,
                   image_key="doc-1" if i < 2 else None)

    list(Pipeline(recorder, batch_size=1, threads=1).run(range(3), hinted))
    assert [len(b) for b in recorder.batches] == [1, 1, 1]
    keys = [b[0] for b in recorder.batches]
    assert len(set(keys)) == 2


# ---------------------------------------------------------------------------------------------------------------------
# Answers and counters on the tiny checkpoint
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_answers(engine, samples):
    return engine.generate(samples, tiling=ONE_TILE, batch_size=1, max_new_tokens=MAX_NEW, reuse=False)


def _lengths(engine, samples, tiling):
    return [len(engine.prepare(images, question, tiling).input_ids) for images, question in samples]


def test_reference_answers_differ_between_questions(reference_answers):
    """The comparisons below only mean something if the questions about one image get different answers from the
    tiny model (a shared prefix that leaked one row's question into another would show)."""
    image_of = [k for _q in QUESTIONS for k in (0, 1)] + [2]
    for k in (0, 1):
        per_image = [a for image, a in zip(image_of, reference_answers) if image == k]
        assert len(set(per_image)) > 1, per_image


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 9])   # 3: a group split 2 + 2, a batch of a part + a single
def test_reuse_gives_the_same_answers(engine, samples, reference_answers, batch_size):
    stats = ReuseStats()
    on = engine.generate(samples, tiling=ONE_TILE, batch_size=batch_size, max_new_tokens=MAX_NEW, stats=stats)
    assert on == reference_answers
    off_stats = ReuseStats()
    off = engine.generate(samples, tiling=ONE_TILE, batch_size=batch_size, max_new_tokens=MAX_NEW, reuse=False,
                          stats=off_stats)
    assert off == reference_answers
    lengths = _lengths(engine, samples, ONE_TILE)
    # ViT: once per unique image (across batches too: features kept for the window), vs once per sample
    assert stats.vit_passes == 3 and stats.vit_tiles == 3 and stats.images == len(samples)
    assert off_stats.vit_passes == len(samples) == off_stats.vit_tiles
    assert stats.prompt_tokens == off_stats.prompt_tokens == off_stats.prefill_tokens == sum(lengths)
    if batch_size == 1:
        assert stats.prefill_tokens == sum(lengths) and stats.shared_rows == 0
    else:   # every batch holds 2+ questions of an image (groups of 4 split 2 + 2 at batch sizes 2 and 3)
        assert stats.prefill_tokens < sum(lengths) and stats.shared_rows == 8


def test_prefill_tokens_are_unique_prefixes_plus_suffixes(engine, samples):
    """Per batch: each image group's common prefix once + every row's own suffix (batch 4: one group per batch)."""
    pipeline = Pipeline(engine, batch_size=4, threads=2)
    ids = [engine.prepare(images, question, ONE_TILE).input_ids for images, question in samples]

    def describe(i):
        images, question = samples[i]
        return Job(key=i, images=list(images), question=question, tiling=ONE_TILE, max_new_tokens=MAX_NEW)

    batches = list(pipeline.run(range(len(samples)), describe))
    expected = 0
    for batch in batches:
        by_image: dict = {}
        for job in batch:
            by_image.setdefault(job.vision_key, []).append(job.key)
        for members in by_image.values():
            if len(members) == 1:
                expected += len(ids[members[0]])
                continue
            prefix = min(common_prefix([ids[m] for m in members]), min(len(ids[m]) for m in members) - 1)
            assert prefix > ids[members[0]].index(engine.img_end_id)     # the image tokens are in the prefix
            expected += prefix + sum(len(ids[m]) - prefix for m in members)
    jobs = [job for batch in batches for job in batch]
    assert sum(j.prefill_tokens for j in jobs) == pipeline.stats.prefill_tokens == expected
    assert [j.prompt_tokens for j in sorted(jobs, key=lambda j: j.key)] == [len(i) for i in ids]
    assert sum(j.vit_passes for j in jobs) == 3
    assert sorted(len(b) for b in batches) == [1, 4, 4]


def test_multi_image_prompts_share_up_to_the_last_image(engine, image_files):
    head = "<image-1>: <image> <image-2>: <image>\n"
    multi = [(image_files[:2], head + q) for q in QUESTIONS[:3]] + [(image_files[1::-1], head + QUESTIONS[0])]
    expected = engine.generate(multi, tiling=ONE_TILE, batch_size=1, max_new_tokens=MAX_NEW, reuse=False)
    stats = ReuseStats()
    assert engine.generate(multi, tiling=ONE_TILE, batch_size=4, max_new_tokens=MAX_NEW, stats=stats) == expected
    assert stats.images == 8 and stats.vit_passes == 4       # the pair once per order (the order is in the key)
    assert stats.shared_rows == 3 and stats.prefill_tokens < stats.prompt_tokens


def test_shared_prefix_logits_equal_alone(engine, samples):
    """The positions and masks of the shared path: every row's logits (first three steps) equal its prompt run alone,
    with suffixes of different lengths (padding between prefix and suffix) and a single row in the same batch."""
    batch = [engine.prepare(images, question, ONE_TILE) for images, question in samples[:4] + samples[-1:]]
    for p, (images, _q) in zip(batch, samples[:4] + samples[-1:]):
        p.vision_key = images[0]
    sequences = engine.build_sequences(batch)
    plan = plan_shared(prefix_groups([p.vision_key for p in batch], [p.input_ids for p in batch],
                                     engine.img_end_id), [p.input_ids for p in batch])
    assert plan is not None and sorted(map(len, plan.units)) == [1, 2, 2]
    assert len({len(p.input_ids) for p in batch}) > 1
    seen = []
    tokens = generate_shared(engine, sequences, plan, 3, watch=lambda _ids, scores: seen.append(scores) or scores)
    text = engine.model.model.language_model
    for r, seq in enumerate(sequences):
        alone = seq[None]
        for step in range(3):
            hidden = text(inputs_embeds=alone).last_hidden_state
            logits = engine.model.lm_head(hidden[:, -1]).float()[0]
            assert torch.allclose(seen[step][r], logits, atol=1e-4, rtol=1e-4), (r, step)
            alone = torch.cat([alone, text.embed_tokens(tokens[r, step:step + 1])[None]], dim=1)


def _spy_shared(monkeypatch) -> list:
    calls = []
    original = engine_module.generate_shared

    def spy(engine, sequences, plan, *args, **kwargs):
        calls.append(len(sequences))
        return original(engine, sequences, plan, *args, **kwargs)

    monkeypatch.setattr(engine_module, "generate_shared", spy)
    return calls


def test_scm_keeps_vision_reuse_without_prefix_reuse(engine, samples, monkeypatch):
    subset = samples[:4] + samples[-1:]
    expected = engine.generate(subset, tiling=SCM_TILING, batch_size=1, max_new_tokens=4, scm=ScmConfig(),
                               reuse=False)
    calls = _spy_shared(monkeypatch)
    stats = ReuseStats()
    got = engine.generate(subset, tiling=SCM_TILING, batch_size=4, max_new_tokens=4, scm=ScmConfig(), stats=stats)
    assert got == expected
    assert calls == []
    assert stats.vit_passes == 3 and stats.vit_tiles < stats.tiles
    assert stats.prefill_tokens == stats.prompt_tokens and stats.shared_rows == 0


def test_a_group_of_one_takes_the_unchanged_path(engine, samples, monkeypatch):
    """One question per image: no shared prefill at all, the same answers and counters as reuse off."""
    singles = [samples[0], samples[1], samples[-1]]
    expected = engine.generate(singles, tiling=ONE_TILE, batch_size=3, max_new_tokens=MAX_NEW, reuse=False)
    calls = _spy_shared(monkeypatch)
    stats = ReuseStats()
    assert engine.generate(singles, tiling=ONE_TILE, batch_size=3, max_new_tokens=MAX_NEW, stats=stats) == expected
    assert calls == []
    assert stats.vit_passes == 3 and stats.prefill_tokens == stats.prompt_tokens and stats.shared_rows == 0
    engine.generate(samples[:4], tiling=ONE_TILE, batch_size=4, max_new_tokens=MAX_NEW)
    assert calls == [4]                                   # the spy sees a batch that does share


def test_feature_cache_is_bounded_and_released():
    cache = FeatureCache(max_bytes=4 * 100)
    a, b = torch.zeros(50), torch.zeros(60)
    assert cache.offer("a", a, wanted={"a"}) and torch.equal(cache.get("a"), a)
    assert not cache.offer("b", b, wanted={"a"})          # not wanted later
    assert not cache.offer("b", b, wanted={"b"})          # over the byte budget
    cache.retain(())
    assert len(cache) == 0


def test_stream_and_prepared_samples_keep_working(engine, samples, reference_answers):
    """generate_stream with reuse yields every index once; Prepared samples (no images known) are answered alone."""
    streamed = dict(generate_stream(engine, samples, tiling=ONE_TILE, batch_size=3, threads=2,
                                    max_new_tokens=MAX_NEW))
    assert [streamed[i] for i in range(len(samples))] == reference_answers
    prepared = [engine.prepare(images, question, ONE_TILE) for images, question in samples[:3]]
    assert engine.generate(prepared, batch_size=3, max_new_tokens=MAX_NEW) == reference_answers[:3]


# ---------------------------------------------------------------------------------------------------------------------
# Phi-3's length-switched RoPE (long factors once a forward's sequence passes 4096 tokens)
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phi3(tmp_path_factory):
    from minimonkey_eval.models import Engine
    from minimonkey_eval.models.tiny_checkpoint import write_checkpoint

    ckpt = write_checkpoint(tmp_path_factory.mktemp("reuse_phi3") / "checkpoint", family="4b")
    torch.manual_seed(0)
    return Engine.from_pretrained(ckpt, dtype=torch.float32, device="cpu")


def test_longrope_prefix_below_4096_prompt_above_is_rerun(phi3):
    """The prefixes are prefilled in a forward of their own: a row whose prefix stays under 4096 tokens (short
    factors) while its whole prompt passes it (long factors alone) is answered again on its own."""
    from helpers.images import text_image

    engine = phi3
    eos = engine.eos_token_id
    rows = [[5] * 4, [5] * 4]
    assert engine._rows_to_rerun_alone([4200, 4150], rows) == []
    assert engine._rows_to_rerun_alone([4200, 4150], rows, first_pass=4000) == [0, 1]
    assert engine._rows_to_rerun_alone([4200, 4150], rows, first_pass=4100) == []
    assert engine._rows_to_rerun_alone([4000], [[5, eos]], first_pass=4100) == [0]
    assert engine._rows_to_rerun_alone([4000], [[5, eos]], first_pass=3999) == []

    image = text_image(600, 2100, (200, 40, 40), "12")       # 2 x 7 grid + thumbnail: 15 tiles, 3840 image tokens
    count = " ".join(str(k) for k in range(1, 140))
    samples = [([image], f"Which number is missing? {count}"), ([image], f"What comes next? {count}")]
    tiling = Tiling.dynamic(24)
    prepared = [engine.prepare(*s, tiling=tiling) for s in samples]
    lengths = [len(p.input_ids) for p in prepared]
    prefix = common_prefix([p.input_ids for p in prepared])
    assert prefix <= 4096 < min(lengths), (prefix, lengths)
    single = [engine.generate([s], tiling=tiling, max_new_tokens=3, batch_size=1, reuse=False)[0] for s in samples]
    stats = ReuseStats()
    assert engine.generate(samples, tiling=tiling, max_new_tokens=3, batch_size=2, stats=stats) == single
    assert stats.shared_rows == 2 and stats.vit_passes == 1
    assert stats.prefill_tokens == prefix + sum(n - prefix for n in lengths) + sum(lengths)   # + the reruns
