"""Synthetic VLMEvalKit TSVs: tiny, deterministic stand-ins for the 18 benchmark files.

`write_sample_tsvs(lmudata_dir)` writes `<lmudata_dir>/<NAME>.tsv` for the 16 scored datasets plus
DocVQA_TEST / InfoVQA_TEST, with the columns VLMEvalKit's own dataset classes read (build_prompt and
evaluate): base64 PNG images drawn with PIL (text on them, sizes and aspect ratios like the real
benchmark: word crops for OCRBench, tall pages for DocVQA/InfoVQA, 16:9 photos for RealWorldQA, ...),
MCQ options/hints/categories, VQA answers as list literals, OCRBench question types, MME image pairs,
HallusionBench structured indices, POPE splits, MathVista fields, MMMU multi-image rows with `<image k>`
tags, and circular MMBench/CCBench copies (index + k*1e6, images referenced by the main row's index).

Every builder below returns plain row dicts (images as PIL images, or the index of the row holding the
image); `write_sample_tsvs` encodes them. Same `seed` -> byte-identical files.
"""
from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Callable

import pandas as pd
from PIL import Image, ImageDraw

from minimonkey_eval.datasets.fixture_drawing import draw_bar_chart, draw_image, encode_image, mcq_options, seeded_rng
from minimonkey_eval.datasets.registry import CIRCULAR_OFFSET, DEFAULT_DATASETS, get_benchmark

SUBMISSION_DATASETS: tuple[str, ...] = ("DocVQA_TEST", "InfoVQA_TEST")
ALL_DATASETS: tuple[str, ...] = tuple(DEFAULT_DATASETS) + SUBMISSION_DATASETS

WORDS = ("APPLE", "RIVER", "CANDLE", "ORBIT", "MAPLE", "TIGER", "PIANO", "HARBOR", "LEMON", "ROCKET",
         "VIOLET", "SUMMIT", "COFFEE", "PLANET", "GARDEN", "SILVER")
OBJECTS = ("dog", "cat", "car", "chair", "bottle", "person", "bicycle", "cup", "clock", "umbrella")


# ------------------------------------------------------------------------------------------------- Y/N
# Interleaved so that the default 8 images cover all 4 reasoning and 4 perception categories.
_MME_ORDER = ("OCR", "code_reasoning", "color", "commonsense_reasoning", "count", "numerical_calculation",
              "existence", "text_translation", "artwork", "celebrity", "landmark", "position", "posters",
              "scene")
_COLORS = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (30, 60, 200), "yellow": (230, 200, 20)}


def _mme_fact(rng: random.Random, category: str, size: tuple[int, int]) -> tuple[Image.Image, str, str]:
    """One MME image and its (yes question, no question)."""
    tail = " Please answer yes or no."
    if category == "count":
        k = rng.randint(2, 5)
        img = draw_image(rng, size, [f"{k} circles"], shapes=0)
        d = ImageDraw.Draw(img)
        for i in range(k):
            x = 20 + i * (size[0] - 40) // k
            d.ellipse((x, size[1] // 2, x + 30, size[1] // 2 + 30), fill=(40, 40, 160))
        return img, f"Are there {k} circles in the image?{tail}", f"Are there {k + 2} circles in the image?{tail}"
    if category == "color":
        name, other = rng.sample(sorted(_COLORS), 2)
        img = draw_image(rng, size, ["the square"], shapes=0)
        ImageDraw.Draw(img).rectangle((size[0] // 3, size[1] // 3, 2 * size[0] // 3, 5 * size[1] // 6),
                                      fill=_COLORS[name])
        return img, f"Is the square {name}?{tail}", f"Is the square {other}?{tail}"
    if category == "numerical_calculation":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        img = draw_image(rng, size, [f"{a} + {b} = ?"])
        return img, f"Is the answer to the arithmetic question in the image {a + b}?{tail}", \
            f"Is the answer to the arithmetic question in the image {a + b + 1}?{tail}"
    if category == "code_reasoning":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        img = draw_image(rng, size, ["a = %d" % a, "b = %d" % b, "print(a * b)"], font_size=22)
        return img, f"The image shows a python code. Is the output of the code '{a * b}'?{tail}", \
            f"The image shows a python code. Is the output of the code '{a * b + 3}'?{tail}"
    word, other = rng.sample(WORDS, 2)
    img = draw_image(rng, size, [word])
    if category == "text_translation":
        return img, f"Is it appropriate to translate the word in the image into '{word.lower()}'?{tail}", \
            f"Is it appropriate to translate the word in the image into '{other.lower()}'?{tail}"
    return img, f"Is the word in the image \"{word}\"?{tail}", f"Is the word in the image \"{other}\"?{tail}"


def build_mme(rng: random.Random, n: int) -> list[dict]:
    """n images x 2 questions (Yes, No) sharing `image_path`: MME's acc+ pairs."""
    rows = []
    for i in range(n):
        cat = _MME_ORDER[i % len(_MME_ORDER)]
        size = rng.choice([(448, 336), (512, 384), (336, 448), (600, 400)])
        img, q_yes, q_no = _mme_fact(rng, cat, size)
        path = f"{cat}/{i:04d}.png"
        first = 2 * i
        rows.append(dict(index=first, image=img, question=q_yes, answer="Yes", category=cat, image_path=path))
        rows.append(dict(index=first + 1, image=first, question=q_no, answer="No", category=cat, image_path=path))
    return rows


_HALLUSION_SETS = (("VD", "chart"), ("VS", "map"), ("VD", "figure"), ("VS", "table"))


def build_hallusionbench(rng: random.Random, n: int) -> list[dict]:
    """n question sets x 2 figures (original, edited) x 2 questions.

    Index `<category>_<l2>_<visual_input>_<set>_<figure>_<question>`: vlmeval's Hallusion_rating splits it
    on '_' and reads set/figure/question ids at positions 3/4/5 (fAcc groups by figure, qAcc by question).
    """
    rows = []
    for s in range(n):
        cat, l2 = _HALLUSION_SETS[s % len(_HALLUSION_SETS)]
        a_name, b_name = rng.sample(WORDS, 2)
        lo, hi = sorted(rng.sample(range(10, 90), 2))
        for fig in range(2):  # figure 1 is the edited one: the comparison flips
            a_val, b_val = (hi, lo) if fig == 0 else (lo, hi)
            img = draw_bar_chart(rng, (600, 400), [a_name.title(), b_name.title()], [a_val, b_val],
                                 title=f"{l2} {s}")
            first = f"{cat}_{l2}_1_{s}_{fig}_0"
            questions = (f"According to the {l2}, is {a_name.title()} larger than {b_name.title()}?",
                         f"According to the {l2}, is {b_name.title()} larger than {a_name.title()}?")
            for q, question in enumerate(questions):
                yes = (a_val > b_val) if q == 0 else (b_val > a_val)
                rows.append({"index": f"{cat}_{l2}_1_{s}_{fig}_{q}", "image": img if q == 0 else first,
                             "question": question, "answer": "Yes" if yes else "No",
                             "category": cat, "l2-category": l2})
    return rows


_POPE_SPLITS = ("adversarial", "popular", "random")


def build_pope(rng: random.Random, n: int) -> list[dict]:
    """Existence questions over the three POPE splits; the last row belongs to two splits at once
    ('adversarial,popular': vlmeval's POPE_rating explodes comma-separated categories)."""
    rows = []
    for i in range(n):
        present = rng.sample(OBJECTS, 3)
        img = draw_image(rng, (640, 427), [f"a {o}" for o in present], font_size=30)
        yes = i % 2 == 0
        obj = present[0] if yes else rng.choice([o for o in OBJECTS if o not in present])
        cat = "adversarial,popular" if i == n - 1 and n > 3 else _POPE_SPLITS[i % 3]
        rows.append(dict(index=i, image=img, question=f"Is there a {obj} in the image?",
                         answer="Yes" if yes else "No", category=cat))
    return rows


# ------------------------------------------------------------------------------------------------- MCQ
def _word_mcq(rng: random.Random, size: tuple[int, int], n_opt: int) -> tuple[Image.Image, dict, str, str]:
    word = rng.choice(WORDS)
    img = draw_image(rng, size, [word, rng.choice(OBJECTS)])
    options, answer = mcq_options(rng, word.title(), tuple(w.title() for w in WORDS), n_opt)
    return img, options, answer, word


_AI2D_CATEGORIES = ("lifeCycles", "foodChainsWebs", "partsOfTheEarth", "typesOf")


def build_ai2d(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        img, opts, ans, _ = _word_mcq(rng, rng.choice([(500, 400), (640, 480), (420, 560)]), 4)
        rows.append(dict(index=i, image=img, question="Which label is written at the top of the diagram?",
                         **opts, answer=ans, category=_AI2D_CATEGORIES[i % len(_AI2D_CATEGORIES)]))
    return rows


def build_realworldqa(rng: random.Random, n: int) -> list[dict]:
    """16:9 'photos'; 2-4 options (missing options stay empty, like the real file)."""
    rows = []
    for i in range(n):
        n_opt = (2, 3, 4)[i % 3]
        img, opts, ans, _ = _word_mcq(rng, (800, 450), n_opt)
        q = "Which word is shown on the sign?\nPlease answer directly with only the letter of the correct option " \
            "and nothing else."
        rows.append(dict(index=i, image=img, question=q, answer=ans, **opts))
    return rows


SEED_CATEGORIES = ("Scene Understanding", "Instance Identity", "Instance Attributes", "Instance Location",
                   "Instances Counting", "Spatial Relation", "Instance Interaction", "Visual Reasoning",
                   "Text Understanding")


def build_seedbench(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        img, opts, ans, _ = _word_mcq(rng, rng.choice([(512, 512), (480, 360), (360, 480)]), 4)
        rows.append(dict(index=i, image=img, question="What is the main word visible in the image?",
                         **opts, answer=ans, category=SEED_CATEGORIES[i % len(SEED_CATEGORIES)]))
    return rows


def circular_rows(main: list[dict]) -> list[dict]:
    """Main rows + their rotations, as VLMEvalKit's circular evaluation expects.

    Rotation k of a question with m options: index + k*1e6, option j <- original option (j+k) mod m,
    answer letter moved accordingly, image = the main row's index (an in-file image reference)."""
    out = []
    for row in main:
        letters = [c for c in string.ascii_uppercase if c in row and row[c] is not None]
        ans_pos = letters.index(row["answer"])
        out.append(row)
        for k in range(1, len(letters)):
            rot = dict(row)
            rot["index"] = row["index"] + k * CIRCULAR_OFFSET
            rot["image"] = row["index"]
            for j, letter in enumerate(letters):
                rot[letter] = row[letters[(j + k) % len(letters)]]
            rot["answer"] = letters[(ans_pos - k) % len(letters)]
            out.append(rot)
    return sorted(out, key=lambda r: r["index"])


CCBENCH_CATEGORIES = ("Calligraphy Painting", "Cultural Relic", "Food & Clothes", "Historical Figures",
                      "Scenery & Building", "Sketch Reasoning", "Traditional Show")


def build_ccbench(rng: random.Random, n: int) -> list[dict]:
    main = []
    for i in range(n):
        img, opts, ans, _ = _word_mcq(rng, rng.choice([(512, 384), (384, 512)]), 4 if i % 3 else 3)
        main.append(dict(index=i, image=img, question="图中写的是哪个英文单词？", **opts, answer=ans,
                         category=CCBENCH_CATEGORIES[i % len(CCBENCH_CATEGORIES)]))
    return circular_rows(main)


# (l2-category, category) pairs; l2 names are the keys of vlmeval's MMB_abbrs.
MMBENCH_ABILITIES = (
    ("coarse_perception", "image_scene"),
    ("finegrained_perception (instance-level)", "ocr"),
    ("finegrained_perception (cross-instance)", "spatial_relationship"),
    ("logic_reasoning", "structuralized_imagetext_understanding"),
    ("relation_reasoning", "social_relation"),
    ("attribute_reasoning", "function_reasoning"),
)
_MMB_TEXT = {
    "en": ("Which word is written in the image?", "The image is a poster."),
    "cn": ("图中写的是哪个单词？", "这张图片是一张海报。"),
}


def build_mmbench(rng: random.Random, n: int, lang: str = "en") -> list[dict]:
    """MMBench DEV in one language. EN and CN share the rng key and so the images: vlmeval decodes both
    into the same `images/MMBench/<index>.png` (img_root_map), like the real translated pair."""
    question, hint = _MMB_TEXT[lang]
    main = []
    for i in range(n):
        img, opts, ans, _ = _word_mcq(rng, rng.choice([(512, 384), (640, 480), (448, 448)]), 4 if i % 4 else 2)
        l2, cat = MMBENCH_ABILITIES[i % len(MMBENCH_ABILITIES)]
        opts.update({c: None for c in "ABCD" if c not in opts})
        main.append(dict(index=i, question=question, hint=hint if i % 2 == 0 else None, **opts, answer=ans,
                         category=cat, image=img, source="synthetic", **{"l2-category": l2},
                         comment=None, split="dev"))
    return circular_rows(main)


_MMMU_SUBJECTS = (("Art", "Art & Design"), ("Math", "Science"), ("Accounting", "Business"),
                  ("Biology", "Science"), ("Computer_Science", "Tech & Engineering"),
                  ("History", "Humanities & Social Science"))


def build_mmmu(rng: random.Random, n: int) -> list[dict]:
    """dev + validation rows; row 1 has two images (`image`/`image_path` lists, `<image 1>`/`<image 2>` tags),
    row 2 is an open question (no options: vlmeval's MMMU_preproc turns it into A=answer / B='Other Answers')."""
    rows = []
    for i in range(n):
        subject, group = _MMMU_SUBJECTS[i % len(_MMMU_SUBJECTS)]
        split = "dev" if i < 2 else "validation"
        base = dict(index=i, category=subject, **{"l2-category": group}, split=split)
        stem = f"{split}_{subject}_{i}"
        if i % 6 == 1:
            w1, w2 = rng.sample(WORDS, 2)
            imgs = [draw_image(rng, (400, 300), [w1]), draw_image(rng, (300, 400), [w2])]
            opts, ans = mcq_options(rng, w2.title(), tuple(w.title() for w in WORDS), 4)
            rows.append(dict(base, question="<image 1> and <image 2> show two words. Which word does the second "
                             "image show?", **opts, answer=ans, image=imgs,
                             image_path=[f"{stem}_1.png", f"{stem}_2.png"], question_type="multiple-choice"))
        elif i % 6 == 2:
            a, b = rng.randint(10, 40), rng.randint(10, 40)
            img = draw_image(rng, (500, 350), [f"{a} + {b}"])
            rows.append(dict(base, question="<image 1> What is the value of the expression?", answer=str(a + b),
                             image=img, image_path=f"{stem}_1.png", question_type="open"))
        else:
            n_opt = 5 if i % 6 == 3 else 4
            img, opts, ans, _ = _word_mcq(rng, (500, 350), n_opt)
            rows.append(dict(base, question="<image 1> Which word is written in the image?", **opts, answer=ans,
                             image=img, image_path=f"{stem}_1.png", question_type="multiple-choice"))
    return rows


# ------------------------------------------------------------------------------------------------- VQA
MATHVISTA_TASKS = ("figure question answering", "geometry problem solving", "math word problem",
                   "textbook question answering", "visual question answering")
MATHVISTA_SKILLS = ("algebraic reasoning", "arithmetic reasoning", "geometry reasoning", "logical reasoning",
                    "numeric commonsense", "scientific reasoning", "statistical reasoning")
_MV_HINTS = {
    "multi_choice": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, "
                    "at the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the final value, "
               "e.g., 1, 2, 3, at the end.",
    "float1": "Hint: Please answer the question requiring a floating-point number with one decimal place and "
              "provide the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "float2": "Hint: Please answer the question requiring a floating-point number with two decimal places and "
              "provide the final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
            "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}
_MV_KINDS = ("multi_choice", "integer", "float1", "multi_choice", "float2", "integer", "list", "integer")


def _mathvista_row(rng: random.Random, i: int, kind: str) -> dict:
    a, b = rng.randint(2, 30), rng.randint(2, 30)
    row = dict(index=i + 1, task=MATHVISTA_TASKS[i % len(MATHVISTA_TASKS)],
               skills=repr(sorted(rng.sample(MATHVISTA_SKILLS, 2))), source="synthetic", unit=None,
               precision=None, choices=None, answer_option=None)
    if kind == "multi_choice":
        angle = rng.choice((30, 45, 60, 75))
        choices = [str(x) for x in (30, 45, 60, 75)]
        img = draw_image(rng, (420, 320), ["triangle", f"angle x = {angle} deg"])
        q = "Find the value of x."
        row.update(question_type="multi_choice", answer_type="text", answer=str(angle), choices=repr(choices),
                   answer_option="ABCD"[choices.index(str(angle))],
                   question=f"{_MV_HINTS[kind]}\nQuestion: {q}\nChoices:\n"
                   + "\n".join(f"({'ABCD'[j]}) {c}" for j, c in enumerate(choices)))
    elif kind == "integer":
        img = draw_bar_chart(rng, (480, 320), ["x", "y"], [a, b])
        row.update(question_type="free_form", answer_type="integer", answer=str(a + b),
                   question=f"{_MV_HINTS[kind]}\nQuestion: What is the sum of the two bars?")
    elif kind in ("float1", "float2"):
        digits = 1 if kind == "float1" else 2
        val = round(a / b, digits)
        img = draw_image(rng, (400, 300), [f"a = {a}", f"b = {b}"])
        row.update(question_type="free_form", answer_type="float", precision=float(digits),
                   answer=f"{val:.{digits}f}", question=f"{_MV_HINTS[kind]}\nQuestion: What is a divided by b?")
    else:
        img = draw_bar_chart(rng, (560, 320), ["2007", "2008", "2009"], [a, a + b, b])
        row.update(question_type="free_form", answer_type="list", answer="[2007, 2008]",
                   question=f"{_MV_HINTS[kind]}\nQuestion: Between which two years does the value rise?")
    row["image"] = img
    return row


def build_mathvista(rng: random.Random, n: int) -> list[dict]:
    """multiple choice (answer text + answer_option letter + choices list), integer, float (precision 1/2)
    and list answers; every task appears at least once with the default n."""
    return [_mathvista_row(rng, i, _MV_KINDS[i % len(_MV_KINDS)]) for i in range(n)]


def _doc_page(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, list[tuple[str, list[str]]]]:
    number = str(rng.randint(10000, 99999))
    day, month = rng.randint(1, 28), rng.choice(("March", "June", "October"))
    year = rng.randint(1960, 1999)
    total = f"{rng.randint(100, 999)}.{rng.randint(10, 99)}"
    lines = ["INVOICE", "", f"Invoice No: {number}", f"Date: {month} {day}, {year}", "",
             "Item          Qty   Price", "Paper           3   12.00", "Ink             1   30.50",
             "", f"Total: ${total}"]
    img = draw_image(rng, size, lines, font_size=max(12, size[0] // 28), shapes=1)
    qas = [("What is the invoice number?", [number]),
           ("What is the date mentioned in the invoice?", [f"{month} {day}, {year}", f"{day} {month} {year}"]),
           ("What is the total amount?", [f"${total}", total])]
    return img, qas


def _vqa_pages(rng: random.Random, n: int, size: Callable[[], tuple[int, int]], page: Callable,
               with_answer: bool, first_index: int) -> list[dict]:
    """n questions, two per page: the second question on a page references the first row's image."""
    rows, i = [], 0
    while len(rows) < n:
        img, qas = page(rng, size())
        first = first_index + i
        for q, answers in rng.sample(qas, 2):
            if len(rows) == n:
                break
            row = dict(index=first_index + i, image=img if first_index + i == first else first, question=q)
            if with_answer:
                row["answer"] = repr(answers)
            rows.append(row)
            i += 1
    return rows


def build_docvqa(rng: random.Random, n: int, with_answer: bool = True) -> list[dict]:
    """Tall scanned-page look (portrait, letter ratio); answers are list literals."""
    return _vqa_pages(rng, n, lambda: rng.choice([(510, 660), (612, 792), (480, 640)]), _doc_page,
                      with_answer, 0 if with_answer else 57344)


def _info_page(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, list[tuple[str, list[str]]]]:
    pct, people = rng.randint(11, 89), rng.randint(2, 9)
    city = rng.choice(("Lisbon", "Oslo", "Nairobi", "Lima"))
    lines = ["REMOTE WORK", f"in {city}", "", f"{pct}%", "work from home", "", f"{people} million",
             "commuters", "", "Source: survey"]
    img = draw_image(rng, size, lines, font_size=max(14, size[0] // 14), shapes=4)
    qas = [("What percentage work from home?", [f"{pct}%", f"{pct}"]),
           ("How many million commuters are there?", [str(people), f"{people} million"]),
           ("Which city is the infographic about?", [city])]
    return img, qas


def build_infovqa(rng: random.Random, n: int, with_answer: bool = True) -> list[dict]:
    """Very tall infographics (about 1:2.5)."""
    return _vqa_pages(rng, n, lambda: rng.choice([(360, 900), (320, 800), (400, 880)]), _info_page,
                      with_answer, 0 if with_answer else 98304)


def build_chartqa(rng: random.Random, n: int) -> list[dict]:
    """Bar charts; `split` alternates human / augmented (vlmeval reports both + Overall); answers are
    plain strings (relaxed accuracy, 5% tolerance for numbers)."""
    rows = []
    for i in range(n):
        labels = rng.sample(("Apples", "Pears", "Plums", "Figs", "Kiwis"), 4)
        values = rng.sample(range(5, 95), 4)
        img = draw_bar_chart(rng, rng.choice([(640, 420), (560, 400), (800, 500)]), labels, values,
                             title="Fruit sales")
        if i % 2 == 0:
            q, a = f"What is the value of {labels[1]}?", str(values[1])
        else:
            q, a = "Which fruit has the highest sales?", labels[values.index(max(values))]
        rows.append(dict(index=i, image=img, question=q, answer=a, split="human" if i % 4 < 2 else "augmented"))
    return rows


def build_textvqa(rng: random.Random, n: int) -> list[dict]:
    """Scene-text images; 10 annotator answers per question (VQA score uses them leave-one-out)."""
    rows = []
    for i in range(n):
        word = rng.choice(WORDS).lower()
        img = draw_image(rng, rng.choice([(640, 480), (480, 640), (800, 600)]), [word.upper(), "OPEN 9-5"],
                         font_size=48)
        answers = [word] * 7 + [f"{word} shop"] * 2 + ["open"]
        rng.shuffle(answers)
        rows.append(dict(index=i, image=img, question="What word is on the sign?", answer=repr(answers)))
    return rows


OCRBENCH_TYPES = ("Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
                  "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition",
                  "Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
                  "Handwritten Mathematical Expression Recognition")


def _ocrbench_item(rng: random.Random, category: str) -> tuple[Image.Image, str, list[str]]:
    if category == "Digit String Recognition":
        digits = "".join(rng.choice(string.digits) for _ in range(7))
        return draw_image(rng, (240, 64), [digits], font_size=34, shapes=0), "what is written in the image?", [digits]
    if category == "Non-Semantic Text Recognition":
        junk = "".join(rng.choice(string.ascii_lowercase) for _ in range(6))
        return draw_image(rng, (220, 64), [junk], font_size=34, shapes=0), "what is written in the image?", [junk]
    if category == "Handwritten Mathematical Expression Recognition":
        a = rng.randint(2, 9)
        img = draw_image(rng, (300, 96), [f"x^{a} + {a}y = 1"], font_size=30, shapes=0)
        return img, ("Please write out the expression of the formula in the image using LaTeX format."), \
            [f"x^{{{a}}}+{a}y=1"]
    if category == "Key Information Extraction":
        total = f"{rng.randint(10, 99)}.{rng.randint(10, 99)}"
        img = draw_image(rng, (360, 240), ["RECEIPT", "Tea      3.20", f"TOTAL   {total}"], font_size=24)
        return img, "What is the total amount in the receipt?", [total]
    if category == "Doc-oriented VQA":
        name = rng.choice(WORDS).title()
        img = draw_image(rng, (420, 300), ["MEMO", f"To: {name}", "Re: budget"], font_size=26)
        return img, "Who is the memo addressed to?", [name]
    if category == "Scene Text-centric VQA":
        name = rng.choice(WORDS).title()
        img = draw_image(rng, (480, 320), [f"{name} CAFE", "open daily"], font_size=36)
        return img, "what is the name of the store?", [f"{name} cafe", name]
    word = rng.choice(WORDS).lower()
    size = (rng.randint(160, 320), rng.randint(48, 96))
    return draw_image(rng, size, [word], font_size=size[1] // 2, shapes=1), "what is written in the image?", [word]


def build_ocrbench(rng: random.Random, n: int) -> list[dict]:
    """One question per OCRBench question type (the 10 categories its metric folds into 5 groups);
    small crops for the recognition types."""
    rows = []
    for i in range(n):
        cat = OCRBENCH_TYPES[i % len(OCRBENCH_TYPES)]
        img, q, answers = _ocrbench_item(rng, cat)
        rows.append(dict(index=i, image=img, question=q, answer=repr(answers), category=cat))
    return rows


# ------------------------------------------------------------------------------------------------ writer
# name -> (rng key, builder(rng, n)); the default n is the registry's ``Benchmark.fixture_rows``.
BUILDERS: dict[str, tuple[str, Callable[..., list[dict]]]] = {
    "MME": ("MME", build_mme),
    "RealWorldQA": ("RealWorldQA", build_realworldqa),
    "AI2D_TEST": ("AI2D_TEST", build_ai2d),
    "CCBench": ("CCBench", build_ccbench),
    "SEEDBench_IMG": ("SEEDBench_IMG", build_seedbench),
    "HallusionBench": ("HallusionBench", build_hallusionbench),
    "POPE": ("POPE", build_pope),
    "MathVista_MINI": ("MathVista_MINI", build_mathvista),
    "DocVQA_VAL": ("DocVQA", build_docvqa),
    "ChartQA_TEST": ("ChartQA_TEST", build_chartqa),
    "InfoVQA_VAL": ("InfoVQA", build_infovqa),
    "TextVQA_VAL": ("TextVQA_VAL", build_textvqa),
    "OCRBench": ("OCRBench", build_ocrbench),
    "MMMU_DEV_VAL": ("MMMU_DEV_VAL", build_mmmu),
    "MMBench_DEV_EN": ("MMBench", lambda rng, **kw: build_mmbench(rng, lang="en", **kw)),
    "MMBench_DEV_CN": ("MMBench", lambda rng, **kw: build_mmbench(rng, lang="cn", **kw)),
    "DocVQA_TEST": ("DocVQA_TEST", lambda rng, **kw: build_docvqa(rng, with_answer=False, **kw)),
    "InfoVQA_TEST": ("InfoVQA_TEST", lambda rng, **kw: build_infovqa(rng, with_answer=False, **kw)),
}


def _encode_cell(value):
    if isinstance(value, Image.Image):
        return encode_image(value)
    if isinstance(value, list) and value and isinstance(value[0], Image.Image):
        return repr([encode_image(v) for v in value])
    if isinstance(value, list):
        return repr(value)
    return value


_LEADING = ("index", "image", "image_path", "question", "hint", "A", "B", "C", "D", "E", "answer")


def _order_columns(df: pd.DataFrame) -> pd.DataFrame:
    """VLMEvalKit-like column order: index, image, question, hint, options, answer, then the metadata."""
    first = [c for c in _LEADING if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def sample_rows(name: str, n: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The fixture table for one dataset (images base64-encoded), without writing it."""
    if name not in BUILDERS:
        raise ValueError(f"no fixture builder for {name!r}; known: {', '.join(BUILDERS)}")
    key, build = BUILDERS[name]
    rows = build(seeded_rng(key, seed), n=get_benchmark(name).fixture_rows if n is None else n)
    return _order_columns(pd.DataFrame([{k: _encode_cell(v) for k, v in row.items()} for row in rows]))


def write_sample_tsvs(lmudata_dir, datasets=None, n: int | None = None, seed: int = 0) -> dict[str, Path]:
    """Write `<lmudata_dir>/<NAME>.tsv` for each dataset (default: the 16 scored + DocVQA_TEST, InfoVQA_TEST).

    n = questions (or question groups: MME image pairs, HallusionBench sets, circular MCQ originals) per
    dataset; None keeps each builder's default (6-10, enough for every metric group). Returns name -> path.
    """
    out_dir = Path(lmudata_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in (ALL_DATASETS if datasets is None else datasets):
        path = out_dir / f"{name}.tsv"
        sample_rows(name, n=n, seed=seed).to_csv(path, sep="\t", index=False)
        paths[name] = path
    record_in_manifest(out_dir, paths.values())
    return paths


def record_in_manifest(out_dir: Path, paths) -> None:
    """Add the written TSVs' md5s to `<out_dir>/minimonkey_fixtures.json`, so loading them does not warn that
    they differ from VLMEvalKit's published md5 (only these exact bytes are exempt; a replaced file warns again)."""
    import json

    from minimonkey_eval.datasets.local import FIXTURE_MANIFEST, file_md5

    manifest = out_dir / FIXTURE_MANIFEST
    try:
        recorded = json.loads(manifest.read_text()) if manifest.exists() else {}
    except ValueError:
        recorded = {}
    recorded.update({Path(p).name: file_md5(Path(p)) for p in paths})
    tmp = manifest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(recorded, indent=1, sort_keys=True))
    tmp.replace(manifest)
