"""Prompt parity with VLMEvalKit's own wrappers (``MiniMonkey``, ``InternVLChat`` V2.0), built without weights.

For every dataset of ``registry.DEFAULT_DATASETS`` a realistic TSV row (the real VLMEvalKit columns) goes through

* the official ``build_prompt`` and our ``build_prompt`` / ``prompts.build_message``: equal messages;
* the official ``generate_inner`` (``load_image`` patched to return dummy tensors, ``model.chat`` recording its
  ``question``) and our wrapper over a fake engine: equal question strings, equal tiles, same MMMU upscaling.
"""
from __future__ import annotations

import pytest
import torch
from helpers.prompt_rows import ROWS, row
from PIL import Image

from minimonkey_eval.datasets.registry import DEFAULT_DATASETS
from minimonkey_eval.eval.backends import prompts
from minimonkey_eval.models.settings import ScmConfig

vlm_mm = pytest.importorskip("vlmeval.vlm.minimonkey")
vlm_ic = pytest.importorskip("vlmeval.vlm.internvl.internvl_chat")
from minimonkey_eval.eval.backends.engine import InternVL2VLM, MiniMonkeyVLM, register  # noqa: E402

CASES = [(d, i) for d in DEFAULT_DATASETS for i in range(len(ROWS[d]))]


def test_rows_cover_every_default_dataset():
    assert set(ROWS) == set(DEFAULT_DATASETS)


def test_registry_types_match_vlmeval():
    from vlmeval.dataset import DATASET_MODALITY, DATASET_TYPE
    for d in DEFAULT_DATASETS:
        assert prompts.dataset_type(d) == DATASET_TYPE(d)
        assert prompts.dataset_modality(d) == DATASET_MODALITY(d) == "IMAGE"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("img")
    paths = []
    for i, size in enumerate([(40, 20), (16, 30), (25, 25)]):
        p = root / f"img{i}.png"
        Image.new("RGB", size, (10 * i, 100, 200)).save(p)
        paths.append(str(p))
    return paths


class FakeEngine:
    def __init__(self):
        self.calls = []

    def generate(self, samples, tiling, max_new_tokens, scm=None):
        self.calls.append(dict(samples=samples, tiling=tiling, max_new_tokens=max_new_tokens, scm=scm))
        return [f"answer-{len(self.calls)}-{i}" for i in range(len(samples))]


class _ChatRecorder:
    def __init__(self):
        self.questions = []

    def chat(self, tokenizer, pixel_values=None, question=None, generation_config=None, **kwargs):
        self.questions.append(question)
        self.generation_config = dict(generation_config)
        return "ok"


class _Pix:
    def __init__(self, n):
        self.n = n

    def cuda(self):
        return torch.zeros(self.n, 1)


def official_minimonkey(monkeypatch, paths):
    calls = []

    def load_image(f, input_size=448, min_num=1, max_num=6):
        calls.append(("s1", f, min_num, max_num))
        return _Pix(3), (2, 1)

    def load_image2(f, input_size=448, target_aspect_ratio=(1, 1), min_num=1, max_num=6):
        calls.append(("s2", f, min_num, max_num))
        return _Pix(2)

    monkeypatch.setattr(vlm_mm, "load_image", load_image)
    monkeypatch.setattr(vlm_mm, "load_image2", load_image2)
    obj = vlm_mm.MiniMonkey.__new__(vlm_mm.MiniMonkey)
    obj.dump_image_func = lambda line: list(paths)
    obj.model, obj.tokenizer, obj.kwargs = _ChatRecorder(), None, {}
    obj.min_num, obj.min_num2 = 4, 3   # ChartQA_TEST inherits these (see test_tile_profiles)
    return obj, calls


def official_internvl(monkeypatch, paths):
    calls = []

    def load_image(f, input_size=448, max_num=6, upscale=False):
        calls.append((f, max_num, upscale))
        return torch.zeros(2, 1)

    monkeypatch.setattr(vlm_ic, "load_image", load_image)
    obj = vlm_ic.InternVLChat.__new__(vlm_ic.InternVLChat)
    obj.dump_image_func = lambda line: list(paths)
    obj.model, obj.tokenizer, obj.device = _ChatRecorder(), None, "cpu"
    obj.use_mpo_prompt, obj.use_cot, obj.use_postprocess, obj._use_custom_prompt = False, False, False, True
    obj.cot_prompt, obj.system_prompt, obj.best_of_n, obj.use_lmdeploy = None, None, 1, False
    obj.version = "V2.0"
    obj.kwargs = dict(do_sample=False, max_new_tokens=4096, top_p=None)
    return obj, calls


def ours(cls, paths, **kw):
    engine = FakeEngine()
    model = cls(engine=engine, **kw)
    model.set_dump_image(lambda line: list(paths))
    return model, engine


def same_prompt_and_question(official, model, engine, name, line, dataset, paths, question_name=None):
    """Both wrappers build the same message and send the engine the question the official model received (``name``
    builds the message, ``question_name`` the question: one family shares one prompt); returns the two generate
    results, the engine's one sample and its tiling."""
    assert model.use_custom_prompt(dataset) is official.use_custom_prompt(dataset) is True
    msg_official = official.build_prompt(line, dataset)
    msg_ours = model.build_prompt(line, dataset)
    assert msg_ours == msg_official
    assert prompts.build_message(name, line, dataset, paths) == msg_official
    answers = (official.generate(message=[dict(x) for x in msg_official], dataset=dataset),
               model.generate(message=msg_ours, dataset=dataset))
    (question,) = official.model.questions
    (sample,) = engine.calls[0]["samples"]
    assert sample[1] == question
    assert prompts.build_question(question_name or name, line, dataset, n_images=len(paths)) == question
    return answers, sample, engine.calls[0]["tiling"]


@pytest.mark.parametrize("dataset,case", CASES)
def test_minimonkey_parity(dataset, case, images, monkeypatch):
    line, n = ROWS[dataset][case]
    paths = images[:n]
    official, calls = official_minimonkey(monkeypatch, paths)
    model, engine = ours(MiniMonkeyVLM, paths)
    answers, sample, tiling = same_prompt_and_question(official, model, engine, "MiniMonkey", line, dataset, paths)
    assert answers == ("ok", "answer-1-0")
    assert sample[0] == paths                                   # no upscaling in VLMEvalKit's MiniMonkey
    for scale, _, lo, hi in calls:
        assert (lo, hi) == ((tiling.min_num, tiling.max_num) if scale == "s1" else (tiling.min_num2, tiling.max_num2))
    assert engine.calls[0]["max_new_tokens"] == official.model.generation_config["max_new_tokens"] == 512


@pytest.mark.parametrize("dataset,case", CASES)
def test_internvl2_parity(dataset, case, images, monkeypatch):
    line, n = ROWS[dataset][case]
    paths = images[:n]
    official, calls = official_internvl(monkeypatch, paths)
    model, engine = ours(InternVL2VLM, paths)
    _, sample, tiling = same_prompt_and_question(official, model, engine, "InternVL2-2B", line, dataset, paths,
                                                 question_name="Mini-InternVL2-1B")
    assert tiling.kind == "dynamic" and tiling.min_num == 1
    assert {c[1] for c in calls} == {tiling.max_num}
    for img, path, (f, _, upscale) in zip(sample[0], paths, calls):
        assert f == path
        if upscale:
            w, h = Image.open(path).size
            assert isinstance(img, Image.Image) and img.size == (2 * w, 2 * h)
        else:
            assert img == path
    assert [c[2] for c in calls] == [i == 0 and "MMMU" in dataset for i in range(n)]
    assert engine.calls[0]["max_new_tokens"] == official.model.generation_config["max_new_tokens"] == 4096


# ---- the multi-image conventions, spelled out ------------------------------------------------------------------
def _msg(*items):
    return [dict(type="text", value=v) if not v.startswith("/") else dict(type="image", value=v) for v in items]


def test_minimonkey_multi_image_layout():
    msg = _msg("Q: <image 1> vs <image 2>?", "/a.png", "/b.png")
    assert prompts.assemble_question("MiniMonkey", msg, "MMMU_DEV_VAL") == (
        "<image-1>: <image> <image-2>: <image>\nQ: <image 1> vs <image 2>?<image-1><image-2>")
    assert prompts.assemble_question("MiniMonkey", _msg("Q", "/a.png")) == "<image>\nQ"
    assert prompts.assemble_question("MiniMonkey", _msg("Q", "R", "/a.png")) == "<image>\nQ\nR"
    assert prompts.assemble_question("MiniMonkey", _msg("Q")) == "\nQ"      # text only: 0 images -> '\n' prefix


def test_internvl2_multi_image_layout():
    msg = _msg("Q: <image 1> vs <image 2>?", "/a.png", "/b.png")
    assert prompts.assemble_question("InternVL2-2B", msg, "MMMU_DEV_VAL") == (
        "Image-1: <image>\nImage-2: <image>\nQ: <image 1> vs <image 2>?")
    # interleaved: markers that are not one back-to-back run stay in the text
    msg = _msg("/a.png", "left", "/b.png", "right")
    assert (prompts.assemble_question("InternVL2-2B", msg)
            == "Image-1: <image>\nImage-2: <image>\n<Image-1>left<Image-2>right")
    assert prompts.assemble_question("InternVL2-2B", _msg("Q")) == "Q"


@pytest.mark.parametrize("model,dataset", [("MiniMonkey", "Video-MME"), ("InternVL2-2B", "MUIRBench"),
                                           ("InternVL2-2B", "MMBench-Video")])
def test_unsupported_layouts_raise(model, dataset):
    with pytest.raises(NotImplementedError):
        prompts.assemble_question(model, _msg("Q", "/a.png"), dataset)


def test_mmmu_upscale_rules(images):
    assert prompts.upscales_first_image("InternVL2-2B", "MMMU_DEV_VAL")
    assert prompts.upscales_first_image("InternVL2-2B", "MMMU_TEST")
    assert not prompts.upscales_first_image("InternVL2-2B", "MME")
    assert not prompts.upscales_first_image("MiniMonkey", "MMMU_DEV_VAL")                  # VLMEvalKit: none
    # the Monkey repo's wrapper upscales for its first scale only: a tiling rule
    # (tests/eval/backends/test_monkey_repo.py)
    assert not prompts.upscales_first_image("MiniMonkey", "MMMU_DEV_VAL", profile="monkey-repo")
    out = prompts.prepare_images("InternVL2-2B", images[:2], "MMMU_DEV_VAL")
    ref = Image.open(images[0]).convert("RGB")
    ref = ref.resize((ref.width * 2, ref.height * 2), Image.BILINEAR)
    assert out[0].tobytes() == ref.tobytes() and out[1] == images[1]


def test_use_custom_prompt_tables():
    ic = vlm_ic.InternVLChat.__new__(vlm_ic.InternVLChat)
    ic._use_custom_prompt = True
    mm = vlm_mm.MiniMonkey.__new__(vlm_mm.MiniMonkey)
    for d in list(DEFAULT_DATASETS) + ["MMDU", "MME-RealWorld", "SSI_Bench", "ChartQAPro", "Video-MME", "MMVet"]:
        assert prompts.use_custom_prompt("InternVL2-2B", d) == ic.use_custom_prompt(d), d
        assert prompts.use_custom_prompt("MiniMonkey", d) == mm.use_custom_prompt(d), d
    assert prompts.use_custom_prompt("MiniMonkey", None) is mm.use_custom_prompt(None) is False


@pytest.mark.parametrize("dataset,question", [
    ("MMVet", "What is shown?"), ("LLaVABench", "Describe it."),
    ("MathVerse_MINI", "please directly answer the question and x"),
    ("DUDE", "Which page?"), ("MME-RealWorld", "Q"), ("AMBER", "Is there a cat?"),
])
def test_other_dataset_text_rules(dataset, question):
    line = row(question=question, answer="x")
    ic = vlm_ic.InternVLChat.__new__(vlm_ic.InternVLChat)
    ic.use_mpo_prompt, ic.use_cot, ic._use_custom_prompt, ic.cot_prompt = False, False, True, None
    ic.kwargs, ic.dump_image_func = {}, (lambda line: [])
    mm = vlm_mm.MiniMonkey.__new__(vlm_mm.MiniMonkey)
    mm.dump_image_func = lambda line: []
    if ic.use_custom_prompt(dataset):
        assert prompts.build_text("InternVL2-2B", line, dataset) == ic.build_prompt(line, dataset)[0]["value"]
    assert prompts.build_text("MiniMonkey", line, dataset) == mm.build_prompt(line, dataset)[0]["value"]


# ---- wrapper plumbing ------------------------------------------------------------------------------------------
def test_generate_batch_groups_by_tiling_and_keeps_order(images):
    model, engine = ours(InternVL2VLM, images)
    one = [dict(type="text", value="q1"), dict(type="image", value=images[0])]
    three = [dict(type="text", value="q3")] + [dict(type="image", value=p) for p in images]
    out = model.generate_batch([one, three, one], dataset="InfoVQA_VAL")
    assert len(engine.calls) == 2
    assert [c["tiling"].max_num for c in engine.calls] == [24, 21]      # 64 // 3 = 21 for the 3-image sample
    assert out == ["answer-1-0", "answer-2-0", "answer-1-1"]
    assert model.generate_batch([], dataset="MME") == []


def test_msac_switch_and_overrides(images):
    model, engine = ours(InternVL2VLM, images, model_name="Mini-InternVL2-1B", msac=True)
    assert model.tiling_for("DocVQA_VAL").describe() == "14-23/5-15"
    model, _ = ours(InternVL2VLM, images, msac=True, tile_profile="monkey-repo", tiles="2-6/1-3",
                    scm=ScmConfig(0.25))
    assert model.tiling_for("DocVQA_VAL").describe() == "2-6/1-3"
    model, engine = ours(MiniMonkeyVLM, images, scm=ScmConfig(0.25))
    model.generate_inner([dict(type="text", value="q"), dict(type="image", value=images[0])], "MME")
    assert engine.calls[0]["scm"] == ScmConfig(ratio=0.25, fix_off_by_one=False)
    with pytest.raises(ValueError, match="bad tiles"):
        MiniMonkeyVLM(engine=FakeEngine(), tiles="12-24/")
    with pytest.raises(ValueError, match="unknown tile profile"):
        InternVL2VLM(engine=FakeEngine(), tile_profile="monkey-repo")
    with pytest.raises(ValueError, match="unknown InternVL2 model"):
        InternVL2VLM(engine=FakeEngine(), model_name="InternVL2-8B")


def test_missing_model_path_is_one_clear_line(monkeypatch):
    monkeypatch.delenv("MINIMONKEY_PATH", raising=False)
    monkeypatch.delenv("INTERNVL2_PATH", raising=False)
    with pytest.raises(ValueError, match=r"MINIMONKEY_PATH") as err:
        MiniMonkeyVLM()
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"INTERNVL2_PATH"):
        InternVL2VLM()


def test_register_adds_partials(images):
    from vlmeval.config import supported_VLM
    entries = register()
    for name in ("MiniMonkey", "InternVL2-2B", "Mini-InternVL2-1B", "Mini-InternVL2-4B"):
        assert supported_VLM[name] is entries[name]
    model = supported_VLM["Mini-InternVL2-4B"](engine=FakeEngine())
    assert isinstance(model, InternVL2VLM) and model.model_name == "Mini-InternVL2-4B"
    assert isinstance(supported_VLM["MiniMonkey"](engine=FakeEngine()), MiniMonkeyVLM)
