"""Prompts exactly as the official VLMEvalKit wrappers build them, with the per-dataset rules kept as data.

Three steps, each one function:

1. ``build_text(model, line, dataset)``: the text of ``build_prompt`` (suffixes, the multiple-choice layout);
2. ``build_message(model, line, dataset, image_paths)``: ``build_prompt``'s message, ``[text] + [image, ...]``;
3. ``assemble_question(model, message, dataset)``: the question string ``generate_v2`` passes to ``model.chat()``
   (where the ``<image>`` placeholders go for one or several images).

``build_question(model, line, dataset, n_images)`` chains them. ``model`` is a name (``'MiniMonkey'``,
``'InternVL2-2B'``, ``'Mini-InternVL2-1B'``...) mapped to a family by ``tile_profiles.model_family``.

Sources (ms-vlmeval 0.0.20):

* ``minimonkey``: ``vlmeval/vlm/minimonkey.py`` ``build_prompt`` L243-273, ``build_multi_choice_prompt`` L206-227,
  ``generate_v2`` L332-344.
* ``minimonkey/monkey-repo`` (``--tiles monkey-repo``): the Monkey repo's ``project/mini_monkey/eval/internvl_chat.py``
  ``build_prompt`` L238-272, ``build_multi_choice_prompt`` L215-236, ``use_custom_prompt`` L212-213 (always True),
  ``generate_v2`` L350-362 (the same image layout as ``minimonkey``). Its rows give the same text as ``minimonkey``
  for every dataset of the registry (tests/eval/backends/test_monkey_repo.py); they differ for MathVision
  (single-word suffix there), for MMDU and ``dataset=None`` (custom prompt there).
* ``internvl2``: ``vlmeval/vlm/internvl/internvl_chat.py`` ``build_prompt`` L242-314 (version V2.0, no CoT / MPO),
  ``utils.build_multi_choice_prompt`` L161-182, ``utils.reorganize_prompt`` L202-240 (general branch), MMMU
  upscaling in ``generate_v2`` L396 / L404 with ``utils.load_image`` L85-88.

Not reproduced (raise ``NotImplementedError``): video datasets, GUI datasets, the InternVL ``USE_COT`` / MPO
prompts, and InternVL's MUIRBench / BMMR / MMSI-Video message layouts. vlmeval is imported lazily, only to type
datasets the harness registry does not know.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass

import pandas as pd

from minimonkey_eval.datasets.registry import BENCHMARKS
from minimonkey_eval.models.tile_profiles import model_family

IMAGE = "<image>"
SINGLE_WORD = "Answer the question using a single word or phrase."
YES_NO = "Please answer yes or no. " + SINGLE_WORD
DETAIL = "Answer this question in detail."


@dataclass(frozen=True)
class PromptRule:
    """One branch of an official ``build_prompt``: applies when the dataset name contains any of ``names``
    (when given) and its VLMEvalKit type is one of ``types`` (when given); a rule with neither is the else branch."""

    names: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    build: str = "plain"                       # 'plain': question (+ suffix); 'mcq'; 'unsupported'
    suffix: str = ""
    replace: tuple[str, str] | None = None     # applied to the question first
    source: str = ""


PROMPT_RULES: dict[str, tuple[PromptRule, ...]] = {
    "minimonkey": (
        PromptRule(names=("MME",), suffix=" " + SINGLE_WORD, source="minimonkey.py L250-252"),
        PromptRule(names=("HallusionBench",), suffix=" " + YES_NO, source="L253-255"),
        PromptRule(types=("MCQ",), build="mcq", source="L256-257"),
        PromptRule(names=("MathVista", "MathVision"), types=("VQA",), source="L259-260"),
        PromptRule(names=("LLaVABench",), types=("VQA",), suffix="\n" + DETAIL, source="L261-263"),
        PromptRule(names=("MMVet",), types=("VQA",), source="L264-265"),
        PromptRule(types=("VQA",), suffix="\n" + SINGLE_WORD, source="L266-268"),
        PromptRule(source="L269-270 (Y/N other than MME/HallusionBench, e.g. POPE; dataset=None)"),
    ),
    "minimonkey/monkey-repo": (
        PromptRule(names=("MME",), suffix=" " + SINGLE_WORD, source="Monkey eval/internvl_chat.py L249-251"),
        PromptRule(names=("HallusionBench",), suffix=" " + YES_NO, source="L252-254"),
        PromptRule(types=("MCQ",), build="mcq", source="L255-256"),
        PromptRule(names=("MathVista",), types=("VQA",), source="L258-259"),
        PromptRule(names=("LLaVABench",), types=("VQA",), suffix="\n" + DETAIL, source="L260-262"),
        PromptRule(names=("MMVet",), types=("VQA",), source="L263-264"),
        PromptRule(types=("VQA",), suffix="\n" + SINGLE_WORD, source="L265-267"),
        PromptRule(source="L268-269 (Y/N other than MME/HallusionBench, e.g. POPE; dataset=None)"),
    ),
    "internvl2": (
        PromptRule(names=("MME",), types=("Y/N",), suffix=" " + SINGLE_WORD, source="internvl_chat.py L252-255"),
        PromptRule(names=("HallusionBench", "AMBER"), types=("Y/N",), suffix=" " + YES_NO, source="L256-257"),
        PromptRule(types=("Y/N",), source="L258-259 (POPE)"),
        PromptRule(types=("MCQ",), build="mcq", source="L260-261"),
        PromptRule(names=("LLaVABench", "WildVision"), types=("VQA",), suffix="\n" + DETAIL, source="L266-267"),
        PromptRule(names=("OCRVQA", "TextVQA", "ChartQA", "DocVQA", "InfoVQA", "OCRBench", "DUDE", "SLIDEVQA", "GQA",
                          "MMLongBench_DOC"), types=("VQA",), suffix="\n" + SINGLE_WORD, source="L268-270"),
        PromptRule(names=("MathVerse",), types=("VQA",), replace=("please directly answer the question and", "please"),
                   source="L271-273"),
        PromptRule(names=("MathVista", "MathVision", "VCR", "MTVQA", "MMVet", "MMDU", "CRPE", "MIA-Bench", "MM-Math",
                          "DynaMath", "QSpatial", "WeMath", "LogicVista", "MM-IFEval", "ChartMimic", "MMReason"),
                   types=("VQA",), source="L276-279"),
        PromptRule(types=("VQA",), suffix="\n" + SINGLE_WORD, source="L282-283"),
        PromptRule(types=("GUI",), build="unsupported", source="L284-302"),
        PromptRule(source="L303-305"),
    ),
}


@dataclass(frozen=True)
class ImageLayout:
    """Where ``generate_v2`` puts the ``<image>`` placeholders.

    One image: ``'<image>\\n' + '\\n'.join(texts)``. Otherwise (0 or >= 2 images): the message is concatenated
    with ``marker`` for each image in place, prefixed by ``header_sep.join(header)`` + ``header_end``; with
    ``strip_marker_run`` the run ``marker(1)..marker(n)`` (all images back to back) is then deleted.
    """

    header: str            # per image, formatted with i (1-based)
    header_sep: str
    header_end: str
    marker: str            # in-text marker for image i
    strip_marker_run: bool
    source: str


IMAGE_LAYOUTS: dict[str, ImageLayout] = {
    # MiniMonkey: '<image-1>: <image> <image-2>: <image>\n' + text + '<image-1><image-2>' (markers stay).
    "minimonkey": ImageLayout("<image-{i}>: <image>", " ", "\n", "<image-{i}>", False, "minimonkey.py L333-344"),
    # InternVL2: 'Image-1: <image>\nImage-2: <image>\n' + text (the trailing marker run is removed).
    "internvl2": ImageLayout("Image-{i}: <image>\n", "", "", "<Image-{i}>", True, "internvl/utils.py L227-239"),
}

# Lower-case dataset-name substrings whose generate path differs from the layouts above.
UNSUPPORTED_LAYOUT: dict[str, tuple[str, ...]] = {
    "minimonkey": ("video",),                                   # minimonkey.py L346-347 (build_video_prompt)
    "internvl2": ("muirbench", "bmmr", "mmsivideo", "video"),   # utils.py L203-226; chat L389 (video modality)
}


@dataclass(frozen=True)
class CustomPromptRule:
    """``use_custom_prompt``: False for ``dataset=None`` (when ``none_ok`` is False), exact ``names``, any of
    ``substrings``, MCQ datasets containing one of ``mcq_substrings`` and video datasets; True otherwise."""

    none_ok: bool
    names: tuple[str, ...]
    substrings: tuple[str, ...]
    mcq_substrings: tuple[str, ...]
    video: bool
    source: str


CUSTOM_PROMPT: dict[str, CustomPromptRule] = {
    "minimonkey": CustomPromptRule(False, (), ("MMDU",), (), False, "minimonkey.py L197-204"),
    "minimonkey/monkey-repo": CustomPromptRule(True, (), (), (), False, "Monkey eval/internvl_chat.py L212-213"),
    "internvl2": CustomPromptRule(
        False,
        ("atomic_dataset", "electro_dataset", "mechanics_dataset", "optics_dataset", "quantum_dataset",
         "statistics_dataset", "SSI_Bench"),
        ("MMDU", "MME-RealWorld", "MME-RealWorld-CN", "WeMath_COT", "MMAlignBench", "ChartQAPro", "ChartMuseum",
         "MMSIVideo_U50", "MMSIVideo_SC"),
        ("LEGO",), True, "internvl_chat.py L218-240"),
}

# First image of a sample upscaled 2x (bilinear) before tiling: (family, tile profile) -> dataset substring.
# (The Monkey repo's wrapper upscales the first image for its first scale only: a tiling rule, ``upscale_first`` of
# its tile profile in ``models/tile_profiles.py``.)
UPSCALE_FIRST_IMAGE: dict[tuple[str, str], str] = {
    ("internvl2", "vlmevalkit"): "MMMU",           # internvl_chat.py L396, L404
}

_CJK = re.compile("[\u4e00-\u9fff]")
_REGISTRY_TYPES = {b.vlmeval_name: b.kind for b in BENCHMARKS}


def dataset_type(dataset: str) -> str:
    """VLMEvalKit's ``DATASET_TYPE``; the registry answers for our datasets without importing vlmeval."""
    if dataset in _REGISTRY_TYPES:
        return _REGISTRY_TYPES[dataset]
    from vlmeval.dataset import DATASET_TYPE
    return DATASET_TYPE(dataset)


def dataset_modality(dataset: str) -> str:
    """VLMEvalKit's ``DATASET_MODALITY`` ('IMAGE' for every registry dataset)."""
    if dataset in _REGISTRY_TYPES:
        return "IMAGE"
    from vlmeval.dataset import DATASET_MODALITY
    return DATASET_MODALITY(dataset)


def table_key(model: str, profile: str = "vlmevalkit") -> str:
    """The prompt table of ``model`` under a tile profile: ``'minimonkey/monkey-repo'`` when the profile is a wrapper
    of its own with a table here, else the family's (``'minimonkey'``, ``'internvl2'``)."""
    family = model_family(model)
    key = f"{family}/{profile}"
    return key if key in PROMPT_RULES else family


def use_custom_prompt(model: str, dataset: str | None, profile: str = "vlmevalkit") -> bool:
    """The official ``use_custom_prompt``: whether the wrapper's ``build_prompt`` (not the dataset's) is used."""
    rule = CUSTOM_PROMPT[table_key(model, profile)]
    if dataset is None:
        return rule.none_ok
    if dataset in rule.names or any(s in dataset for s in rule.substrings):
        return False
    if rule.mcq_substrings and any(s in dataset for s in rule.mcq_substrings) and dataset_type(dataset) == "MCQ":
        return False
    return not (rule.video and dataset_modality(dataset) == "VIDEO")


def _has(line, key: str) -> bool:
    if key not in line:
        return False
    value = line[key]
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):   # a list / array cell: present
        return True


def _question(line) -> str:
    """The row's question as text; a missing or NaN question (an empty TSV cell) is a clear ValueError, not the
    official wrappers' ``TypeError: unsupported operand`` from ``nan + str``. Non-text cells (a number) are str()'d."""
    if not _has(line, "question"):
        raise ValueError("row has no question (missing or empty 'question' cell)")
    return _text(line["question"])


def _text(value) -> str:
    return value if isinstance(value, str) else str(value)


def multi_choice_text(line) -> str:
    """Hint + question + ``\\nA. ...`` options + the answer instruction (Chinese when the text has CJK)."""
    question = _question(line)
    if _has(line, "hint"):
        question = _text(line["hint"]) + "\n" + question
    options = [(c, line[c]) for c in string.ascii_uppercase if _has(line, c)]
    for key, item in options:
        question += f"\n{key}. {item}"
    cn = bool(_CJK.search(question))
    if options:
        return question + ("\n请直接回答选项字母。" if cn
                           else "\nAnswer with the option's letter from the given choices directly.")
    return question + ("\n请直接回答问题。" if cn else "\nAnswer the question directly.")


def match_rule(model: str, dataset: str | None, profile: str = "vlmevalkit") -> PromptRule:
    """The first rule of the model's table (under ``profile``, see :func:`table_key`) that applies to ``dataset``."""
    for rule in PROMPT_RULES[table_key(model, profile)]:
        if not rule.names and not rule.types:
            return rule
        if dataset is None:
            continue
        if rule.names and not any(n in dataset for n in rule.names):
            continue
        if rule.types and dataset_type(dataset) not in rule.types:
            continue
        return rule
    raise AssertionError("every prompt table ends with an else rule")


def build_text(model: str, line, dataset: str | None, profile: str = "vlmevalkit") -> str:
    """The text item of the official ``build_prompt(line, dataset)``."""
    rule = match_rule(model, dataset, profile)
    if rule.build == "unsupported":
        raise NotImplementedError(f"{model}: prompts for dataset {dataset!r} are not reproduced ({rule.source})")
    if rule.build == "mcq":
        return multi_choice_text(line)
    question = _question(line)
    if rule.replace:
        question = question.replace(*rule.replace)
    return question + rule.suffix


def build_message(model: str, line, dataset: str | None, image_paths, profile: str = "vlmevalkit") -> list[dict]:
    """The official ``build_prompt`` message: the text first, then one image item per path."""
    paths = [image_paths] if isinstance(image_paths, str) else list(image_paths)
    return ([dict(type="text", value=build_text(model, line, dataset, profile))]
            + [dict(type="image", value=p) for p in paths])


def assemble_question(model: str, message: list[dict], dataset: str | None = None) -> str:
    """The ``question`` the official ``generate_v2`` hands to ``chat()`` for this message."""
    family = model_family(model)
    if dataset is not None and any(s in dataset.lower() for s in UNSUPPORTED_LAYOUT[family]):
        raise NotImplementedError(f"{model}: the generate path for dataset {dataset!r} is not reproduced")
    layout = IMAGE_LAYOUTS[family]
    n_images = sum(1 for x in message if x["type"] == "image")
    if n_images == 1:
        return IMAGE + "\n" + "\n".join(x["value"] for x in message if x["type"] == "text")
    body, idx = "", 0
    for x in message:
        if x["type"] == "text":
            body += x["value"]
        elif x["type"] == "image":
            idx += 1
            body += layout.marker.format(i=idx)
    question = layout.header_sep.join(layout.header.format(i=i) for i in range(1, n_images + 1))
    question += layout.header_end + body
    if layout.strip_marker_run:
        question = question.replace("".join(layout.marker.format(i=i) for i in range(1, n_images + 1)), "")
    return question


def build_question(model: str, line, dataset: str | None, n_images: int = 1, profile: str = "vlmevalkit") -> str:
    """Final question text (with ``<image>`` placeholders) for a row with ``n_images`` images."""
    paths = [f"image_{i}" for i in range(n_images)]
    return assemble_question(model, build_message(model, line, dataset, paths, profile), dataset)


def upscales_first_image(model: str, dataset: str | None, profile: str = "vlmevalkit") -> bool:
    """Whether the wrapper upscales the first image 2x before tiling (MMMU)."""
    needle = UPSCALE_FIRST_IMAGE.get((model_family(model), profile))
    return bool(needle and dataset is not None and needle in dataset)


def upscale_2x(image):
    """``Image.open(f).convert('RGB').resize((2w, 2h), BILINEAR)`` as in InternVL's ``load_image(upscale=True)``."""
    from PIL import Image

    img = Image.open(image) if not isinstance(image, Image.Image) else image
    img = img.convert("RGB")
    return img.resize((img.width * 2, img.height * 2), Image.BILINEAR)


def prepare_images(model: str, images: list, dataset: str | None, profile: str = "vlmevalkit") -> list:
    """The sample's images as the engine should see them: the first one upscaled when the wrapper does so."""
    images = list(images)
    if images and upscales_first_image(model, dataset, profile):
        images[0] = upscale_2x(images[0])
    return images
