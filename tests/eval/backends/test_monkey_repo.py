"""Parity with the authors' evaluation wrapper (``--tiles monkey-repo``), built without weights.

The reference is the Monkey repo's ``project/mini_monkey/eval/internvl_chat.py`` (Yuliang-Liu/Monkey @498e1d9, also
shipped with the mx262/MiniMonkey checkpoint). It imports vlmeval internals of its time and cannot be imported here,
so its logic is re-written below from reading it (line numbers cite that file): ``set_max_num`` (tile rows),
``build_prompt`` / ``build_multi_choice_prompt`` (prompts), ``generate_v2`` (question layout, per-image tiling with
``load_image`` / ``load_image2``, the MMMU upscale), ``build_prompt``'s generation kwargs. For every dataset of the
registry (the rows of tests/helpers/prompt_rows.py) our ``MiniMonkeyVLM(tile_profile='monkey-repo')`` must give the same
message, question string, pixel tensors (bit-equal) and ``max_new_tokens``.
"""
from __future__ import annotations

import dataclasses
import re
import string

import pandas as pd
import pytest
import torch
from PIL import Image

from minimonkey_eval.datasets.registry import DEFAULT_DATASETS
from minimonkey_eval.eval.backends import authors_setting, prompts
from minimonkey_eval.models.engine import Engine
from minimonkey_eval.models.tile_profiles import PROFILES, max_new_tokens_for, resolve_tiles
from minimonkey_eval.models.tiling import msac_tiling

T = pytest.importorskip("torchvision.transforms")
InterpolationMode = pytest.importorskip("torchvision.transforms.functional").InterpolationMode
vlm_dataset = pytest.importorskip("vlmeval.dataset")
from helpers.prompt_rows import ROWS, row  # noqa: E402  (the realistic rows, one or more per registry dataset)

from minimonkey_eval.eval.backends.engine import MiniMonkeyVLM  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# The reference, re-written from reading project/mini_monkey/eval/internvl_chat.py
# ---------------------------------------------------------------------------------------------------------------
def ref_set_max_num(dataset):
    """L274-314 -> (min_num1, max_num, min_num2, max_num2); the mins start at 4 / 1 (L275-276)."""
    def has(*names):
        return dataset is not None and any(n in dataset for n in names)

    if has("ChartQA_TEST"):
        return 4, 12, 1, 3
    if has("DocVQA_VAL", "DocVQA_TEST"):
        return 1, 24, 1, 8
    if has("InfoVQA_VAL", "InfoVQA_TEST"):
        return 5, 24, 3, 8
    if has("OCRBench"):
        return 8, 24, 3, 9
    if has("CCBench"):
        return 3, 8, 1, 4
    if has("RealWorldQA"):
        return 3, 12, 1, 4
    if has("MME", "HallusionBench", "POPE"):
        return 3, 9, 1, 4
    return 12, 24, 3, 5


def ref_multi_choice(line):
    """L215-236; ``cn_string`` is vlmeval's (as the file imports it)."""
    from vlmeval.smp import cn_string

    question = line["question"]
    hint = line["hint"] if ("hint" in line and not pd.isna(line["hint"])) else None
    if hint is not None:
        question = hint + "\n" + question
    options = {c: line[c] for c in string.ascii_uppercase if c in line and not pd.isna(line[c])}
    for key, item in options.items():
        question += f"\n{key}. {item}"
    if options:
        return question + ("\n请直接回答选项字母。" if cn_string(question)
                           else "\nAnswer with the option's letter from the given choices directly.")
    return question + ("\n请直接回答问题。" if cn_string(question) else "\nAnswer the question directly.")


def ref_build_prompt(line, dataset, paths):
    """L238-272 (message: text first, then the images)."""
    dtype = vlm_dataset.DATASET_TYPE(dataset) if dataset is not None else None
    q = line["question"]
    if dataset is not None and "MME" in dataset:
        text = q + " Answer the question using a single word or phrase."
    elif dataset is not None and "HallusionBench" in dataset:
        text = q + " Please answer yes or no. Answer the question using a single word or phrase."
    elif dtype == "MCQ":
        text = ref_multi_choice(line)
    elif dtype == "VQA":
        if "MathVista" in dataset or "MMVet" in dataset:
            text = q
        elif "LLaVABench" in dataset:
            text = q + "\nAnswer this question in detail."
        else:
            text = q + "\nAnswer the question using a single word or phrase."
    else:
        text = q
    return [dict(type="text", value=text)] + [dict(type="image", value=p) for p in paths]


def ref_question(message):
    """L351-362."""
    n = sum(x["type"] == "image" for x in message)
    if n == 1:
        return "<image>\n" + "\n".join(x["value"] for x in message if x["type"] == "text")
    prompt, k = "", 1
    for x in message:
        if x["type"] == "text":
            prompt += x["value"]
        else:
            prompt += f"<image-{k}>"
            k += 1
    return " ".join(f"<image-{i + 1}>: <image>" for i in range(n)) + "\n" + prompt


def _ref_closest(ar, ratios, w, h, size):
    best_diff, best = float("inf"), (1, 1)
    for r in ratios:
        diff = abs(ar - r[0] / r[1])
        if diff < best_diff:
            best_diff, best = diff, r
        elif diff == best_diff and w * h > 0.5 * size * size * r[0] * r[1]:
            best = r
    return best


def _ref_tiles(image, lo, hi, size, prior=None):
    """dynamic_preprocess (L47-81) / dynamic_preprocess2 with ``prior_aspect_ratio`` (L94-135), thumbnail on."""
    w, h = image.size
    ratios = sorted({(i, j) for n in range(lo, hi + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                     if lo <= i * j <= hi}, key=lambda r: r[0] * r[1])
    if prior is not None:
        ratios = [r for r in ratios if prior[0] % r[0] or prior[1] % r[1]]
    grid = _ref_closest(w / h, ratios, w, h, size)
    big = image.resize((size * grid[0], size * grid[1]))
    crops = [big.crop(((k % grid[0]) * size, (k // grid[0]) * size, (k % grid[0] + 1) * size,
                       (k // grid[0] + 1) * size)) for k in range(grid[0] * grid[1])]
    if len(crops) != 1:
        crops.append(image.resize((size, size)))
    return crops, grid


def _ref_transform(size):
    return T.Compose([T.Lambda(lambda im: im.convert("RGB") if im.mode != "RGB" else im),
                      T.Resize((size, size), interpolation=InterpolationMode.BICUBIC), T.ToTensor(),
                      T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])


def ref_load_image(path, size=448, min_num=1, max_num=6, upscale=False, prior=None):
    """load_image (L84-92; ``upscale``: 2x bilinear first) and load_image2 (``prior``, L137-143)."""
    image = Image.open(path).convert("RGB")
    if upscale:
        image = image.resize((image.width * 2, image.height * 2), Image.BILINEAR)
    crops, grid = _ref_tiles(image, min_num, max_num, size, prior)
    return torch.stack([_ref_transform(size)(c) for c in crops]), grid


def ref_pixels(paths, dataset, size=448):
    """generate_v2's pixel branches (L364-387) -> (pixel_values, num_patches_list)."""
    min1, max1, min2, max2 = ref_set_max_num(dataset)
    mmmu = dataset is not None and "MMMU_DEV_VAL" in dataset
    if len(paths) > 1:
        out = []
        for k, path in enumerate(paths):
            pv, _ = ref_load_image(path, size, min1, max1, upscale=k == 0 and mmmu)
            pv2, _ = ref_load_image(path, size, min2, max2)                     # independent second scale
            out.append(torch.cat([pv[:-1], pv2[:-1], pv[-1:]]))
        return torch.cat(out), [x.shape[0] for x in out]
    pv, grid = ref_load_image(paths[0], size, min1, max1, upscale=mmmu)
    pv2, _ = ref_load_image(paths[0], size, min2, max2, prior=grid)            # load_image2: original image
    pv = torch.cat([pv[:-1], pv2[:-1], pv[-1:]])
    return pv, [pv.shape[0]]


REF_GENERATION = dict(do_sample=False, max_new_tokens=1024, top_p=None, num_beams=1)   # L246


# ---------------------------------------------------------------------------------------------------------------
# Ours, through the wrapper and Engine.prepare (the tiling code the runner's fast path runs)
# ---------------------------------------------------------------------------------------------------------------
class TilesEngine(Engine):
    """Engine.prepare (real tiling) without a model: prepare_tiles keeps the tiles; generate records the call."""

    def __init__(self):   # no super().__init__: no model, no tokenizer
        self.normalize_on_device = False
        self.default_tiling = None
        self.calls = []

    def prepare_tiles(self, tiles, question):
        return (tiles, question)

    def generate(self, samples, tiling=None, max_new_tokens=512, scm=None):
        # the pipeline's staging step: Engine.prepare of each (images, question) with the wrapper's tiling
        samples = [self.prepare(images, question, tiling) for images, question in samples]
        self.calls.append(dict(samples=samples, tiling=tiling, max_new_tokens=max_new_tokens, scm=scm))
        return ["A"] * len(samples)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("monkey")
    paths = []
    for i, size in enumerate([(61, 23), (17, 40), (33, 33)]):
        p = root / f"img{i}.png"
        g = torch.Generator().manual_seed(i)
        pixels = torch.randint(0, 256, (8, 8, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).resize(size, Image.NEAREST).save(p)
        paths.append(str(p))
    return paths


CASES = [(d, i) for d in DEFAULT_DATASETS for i in range(len(ROWS[d]))]


def test_rows_match_the_reference_chain():
    profile = PROFILES[("minimonkey", "monkey-repo")]
    names = list(DEFAULT_DATASETS) + ["DocVQA_TEST", "InfoVQA_TEST", "MME-RealWorld", "POPE_adv", "MMMU_TEST", None]
    for dataset in names:
        got = resolve_tiles("MiniMonkey", dataset, profile="monkey-repo")
        assert (got.min_num, got.max_num, got.min_num2, got.max_num2) == ref_set_max_num(dataset), dataset
        assert max_new_tokens_for("MiniMonkey", dataset, "monkey-repo") == REF_GENERATION["max_new_tokens"]
    assert profile.rows[-1].patterns == ()


@pytest.mark.parametrize("dataset,case", CASES)
def test_monkey_repo_parity(dataset, case, images):
    line, n = ROWS[dataset][case]
    paths = images[:n]
    engine = TilesEngine()
    model = MiniMonkeyVLM(engine=engine, tile_profile="monkey-repo")
    model.set_dump_image(lambda line: list(paths))

    assert model.use_custom_prompt(dataset) is True                         # L212-213: always
    message = model.build_prompt(line, dataset)
    ref_message = ref_build_prompt(line, dataset, paths)
    assert message == ref_message
    assert prompts.build_text("MiniMonkey", line, dataset, "monkey-repo") == ref_message[0]["value"]

    assert model.generate(message=message, dataset=dataset) == "A"
    (call,) = engine.calls
    ((tiles, question),) = call["samples"]
    assert question == ref_question(ref_message)
    assert prompts.build_question("MiniMonkey", line, dataset, n_images=n, profile="monkey-repo") == question
    ref_pv, ref_counts = ref_pixels(paths, dataset)
    assert [t.pixel_values.shape[0] for t in tiles] == ref_counts
    assert torch.equal(torch.cat([t.pixel_values for t in tiles]), ref_pv)
    assert call["max_new_tokens"] == REF_GENERATION["max_new_tokens"] and call["scm"] is None


def test_multi_image_second_scale_is_independent(tmp_path):
    """An image whose best second-scale grid divides its first grid: the single-image branch (load_image2) must
    avoid it, the multi-image branch (load_image) takes it; the first image of an MMMU_DEV_VAL sample is upscaled
    at the first scale only."""
    path = tmp_path / "wide.png"
    noise = torch.randint(0, 256, (4, 16, 3), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    Image.fromarray(noise.numpy()).resize((400, 100), Image.NEAREST).save(path)
    single = resolve_tiles("MiniMonkey", "OCRBench", "monkey-repo", n_images=1)
    multi = resolve_tiles("MiniMonkey", "OCRBench", "monkey-repo", n_images=2)
    assert not single.independent_scale2 and multi.independent_scale2
    a = msac_tiling(str(path), 8, 24, 3, 9, image_size=112)
    b = msac_tiling(str(path), 8, 24, 3, 9, image_size=112, independent_scale2=True)
    assert a.grid == b.grid == (8, 2) and b.grid2 == (4, 1) and a.grid2 != (4, 1)   # (4, 1) divides (8, 2)
    assert torch.equal(b.pixel_values, ref_pixels([str(path)] * 2, "OCRBench", size=112)[0][:b.pixel_values.shape[0]])
    up = msac_tiling(str(path), 12, 24, 3, 5, image_size=112, upscale=True)
    plain = msac_tiling(str(path), 12, 24, 3, 5, image_size=112)
    assert up.grid2 == plain.grid2 and not torch.equal(up.pixel_values[-1], plain.pixel_values[-1])  # thumbnail
    assert torch.equal(up.pixel_values, ref_pixels([str(path)], "MMMU_DEV_VAL", size=112)[0])
    assert resolve_tiles("MiniMonkey", "MMMU_DEV_VAL", "monkey-repo").upscale_first
    assert not resolve_tiles("MiniMonkey", "MMMU_DEV_VAL").upscale_first                 # VLMEvalKit: none


@pytest.mark.parametrize("independent,upscale", [(True, False), (False, True), (True, True)])
def test_tiling_options_bit_equal_sweep(tmp_path, independent, upscale):
    """20 sizes per option (60 over the three) x the profile's rows at 112 px tiles against the reference
    load_image / load_image2 (tests/models/test_tiling.py sweeps the shared tiler itself over 210 sizes)."""
    rows = sorted({ref_set_max_num(d) for d in list(DEFAULT_DATASETS) + [None]})
    g = torch.Generator().manual_seed(7 + 2 * independent + upscale)   # other sizes per option
    for k in range(20):
        w, h = (int(x) for x in torch.randint(1, 700, (2,), generator=g))
        path = tmp_path / f"s{k % 3}.png"
        Image.fromarray(torch.randint(0, 256, (6, 6, 3), generator=g, dtype=torch.uint8).numpy()).resize(
            (w, h), Image.NEAREST).save(path)
        mn, mx, mn2, mx2 = rows[k % len(rows)]
        ours = msac_tiling(str(path), mn, mx, mn2, mx2, image_size=112, independent_scale2=independent,
                           upscale=upscale).pixel_values
        pv, grid = ref_load_image(path, 112, mn, mx, upscale=upscale)
        pv2, _ = ref_load_image(path, 112, mn2, mx2, prior=None if independent else grid)
        assert torch.equal(ours, torch.cat([pv[:-1], pv2[:-1], pv[-1:]])), f"{(w, h)} {rows[k % len(rows)]}"


@pytest.mark.parametrize("dataset,question", [("MathVision", "Q?"), ("MMDU", "Q?"), ("LLaVABench", "Describe."),
                                              ("MMVet", "What?"), ("MathVista_MINI", "How many?")])
def test_prompt_rows_beyond_the_registry(dataset, question):
    """The two tables differ where the files differ: MathVision (single-word suffix in the Monkey file), MMDU and
    dataset=None (custom prompt there)."""
    line = row(question=question, answer="x")
    ref = ref_build_prompt(line, dataset, [])[0]["value"]
    assert prompts.build_text("MiniMonkey", line, dataset, "monkey-repo") == ref
    assert prompts.use_custom_prompt("MiniMonkey", dataset, "monkey-repo") is True
    assert prompts.use_custom_prompt("MiniMonkey", None, "monkey-repo") is True
    assert prompts.use_custom_prompt("MiniMonkey", "MMDU") is False
    assert prompts.build_text("MiniMonkey", row(question="Q?"), "MathVision", "monkey-repo") != \
        prompts.build_text("MiniMonkey", row(question="Q?"), "MathVision")


def test_internvl2_msac_keeps_its_own_upscale(images):
    """InternVL2 + MSAC under monkey-repo tiles: InternVL2's whole-image MMMU upscale, not the Monkey wrapper's."""
    from minimonkey_eval.eval.backends.engine import InternVL2VLM

    model = InternVL2VLM(engine=TilesEngine(), msac=True, tile_profile="monkey-repo")
    assert not model.tiling_for("MMMU_DEV_VAL").upscale_first
    assert MiniMonkeyVLM(engine=TilesEngine(), tile_profile="monkey-repo").tiling_for("MMMU_DEV_VAL").upscale_first


def test_run_records_and_fallback_count():
    rec = authors_setting.dataset_record("MiniMonkey", "MiniMonkey", "monkey-repo", "MMMU_DEV_VAL")
    assert rec["upscale_first"] is True and rec["prompts"].startswith("minimonkey/monkey-repo: L255-256")
    assert re.match("independent", rec["multi_image_scale2"])
    assert authors_setting.dataset_record("MiniMonkey", "MiniMonkey", "vlmevalkit", "MMMU_DEV_VAL") == {}
    assert authors_setting.default_dtype("monkey-repo") == "bfloat16"
    assert authors_setting.default_dtype("vlmevalkit") is None
    assert set(authors_setting.run_record("monkey-repo")["behaviours"]) >= {"multi_image_scale2", "mmmu_upscale",
                                                                            "dtype", "oom_fallback"}
    err = authors_setting.oom_fallback(torch.cuda.OutOfMemoryError("CUDA out of memory (fake)"))
    records = [dict(failed=True, reason=f"generate: OomFallback: {err}"), dict(failed=True, reason="prompt: bad"),
               dict(failed=False, reason="")]
    assert authors_setting.count_oom_fallbacks(records) == 1
    meta = {"tile_profile": "monkey-repo", "results": {"MME": {"oom_fallbacks": 0}, "POPE": {"oom_fallbacks": 2}}}
    assert authors_setting.oom_fallbacks_text(meta) == "2 (POPE 2)"
    assert authors_setting.oom_fallbacks_text({"tile_profile": "vlmevalkit", "results": {}}) == ""


# ---------------------------------------------------------------------------------------------------------------
# The runner in the authors' setting: bf16 default, OOM -> failed samples counted (never 'A'), run.json records
# ---------------------------------------------------------------------------------------------------------------
class FallbackEngine:
    """Out of memory for every batch of several samples and for every other single sample; 'x' otherwise."""

    def __init__(self, engine):
        self._engine, self.singles, self.tiles = engine, 0, []

    def generate_prepared(self, batch, **kw):
        self.tiles.extend(p.num_tiles for p in batch)
        if len(batch) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake)")
        self.singles += 1
        if self.singles % 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake)")
        return ["x"]

    def __getattr__(self, name):
        return getattr(self._engine, name)


def test_runner_counts_would_be_fallbacks(tmp_path, tiny_checkpoint, engine):
    import json

    from minimonkey_eval.datasets.fixtures import write_sample_tsvs
    from minimonkey_eval.eval.backends.engine_backend import EngineBackend
    from minimonkey_eval.eval.launch import run
    from minimonkey_eval.eval.report import build as report
    from minimonkey_eval.eval.report import tables as report_tables
    from minimonkey_eval.eval.run.distributed import DistContext
    from minimonkey_eval.eval.run.options import RunOptions

    root = tmp_path / "LMUData"
    write_sample_tsvs(root, datasets=["OCRBench"], n=4)
    opts = RunOptions(model="MiniMonkey", datasets=["OCRBench"], model_path=str(tiny_checkpoint), data_root=str(root),
                      work_dir=str(tmp_path / "results"), tiles="monkey-repo", max_new_tokens=4, batch_size=4)
    fake = FallbackEngine(engine)
    result = run(opts, engine=fake)
    assert fake.singles == 4 and min(fake.tiles) >= 8          # never retried with fewer tiles (8-24/3-9 kept)
    meta = json.loads((result.run_dir / "run.json").read_text())
    assert meta["results"]["OCRBench"]["failed"] == meta["results"]["OCRBench"]["oom_fallbacks"] == 2
    samples = pd.read_csv(result.run_dir / "OCRBench_samples.csv", keep_default_na=False)
    assert list(samples["prediction"]).count("A") == 0 and samples["reason"].str.contains("oom_fallback").sum() == 2
    assert meta["tiles"]["OCRBench"]["prompts"].startswith("minimonkey/monkey-repo:")
    assert meta["tiles"]["OCRBench"]["upscale_first"] is False
    assert meta["wrapper"]["behaviours"]["oom_fallback"].startswith("torch.cuda.OutOfMemoryError")
    ctx = report.ReportContext(report.collect_report(tmp_path / "results"), None, tmp_path / "results")
    runs = report_tables.runs(ctx).page[0]
    col = next(i for i, c in enumerate(runs.headers) if c.startswith("OOM 'A' fallbacks"))
    assert runs.rows[0][col].text == "2 (OCRBench 2)"
    # no --dtype: the authors' bf16, also on CPU
    assert EngineBackend(dataclasses.replace(opts, run_name="bf16"), DistContext()).engine.dtype == torch.bfloat16
