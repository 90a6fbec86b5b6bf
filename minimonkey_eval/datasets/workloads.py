"""Synthetic benchmark workloads for ``bench``: VLMEvalKit-shaped TSVs whose images, tiles, questions per image and
answer lengths mirror real sets.

:func:`write_workload` writes ``<root>/<DATASET>.tsv`` (the fixture table's columns for that dataset, base64 JPEG
quality 90 images as VLMEvalKit's TSVs hold them), so that ``bench`` runs the workload through the runner exactly as
``minimonkey-eval run --data-root <root>`` would. Several questions are asked about each image, as in the real set
(:attr:`Workload.questions_per_image`; image k gets ``round((k+1)q) - round(kq)`` different questions, so the mean is
``q``): the first row of an image carries it, the others hold that row's index in their ``image`` cell (VLMEvalKit's
image reference) and repeat its ``image_path``. DocVQA-like pages (~2000x2600, MSAC 14-23/5-15, 4.2 questions per
page), InfoVQA-like tall infographics (15-23/3-5, 5.6), POPE-like photos (9-24/5-8, 10.3), MME-like photos
(5-11/2-6, 2.0: the yes/no pairs), OCRBench-like word crops (9-24/5-8, one question each).
:attr:`Workload.answer_tokens` is the answer length the bench decodes (a random model never stops early): 8 new
tokens for the VQA-like sets, 2 for the yes/no ones.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workload:
    """A synthetic stand-in for one benchmark: image sizes like the real set, its VLMEvalKit tiles and prompt."""

    name: str
    dataset: str                 # VLMEvalKit dataset name whose tile row (tile_profiles) is used
    kind: str                    # 'document' | 'crop' | 'photo'
    width: tuple[int, int]       # image width range (inclusive)
    height: tuple[int, int]
    questions: tuple[str, ...]   # raw TSV questions (the wrapper's build_prompt adds the dataset's suffix)
    questions_per_image: float = 1.0   # mean questions asked about one image in the real set
    answer_tokens: int = 8             # new tokens the bench decodes per answer (a realistic answer length)


_POPE_OBJECTS = ("dog", "cat", "car", "chair", "bottle", "person", "bicycle", "cup", "clock", "umbrella", "bus",
                 "bench", "book")

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    # DocVQA pages: ~2000 x 2600 scans (1700-2300 x 2200-2900); MSAC 14-23 / 5-15 (VK set_max_num L286-290);
    # val: 5349 questions on 1286 pages.
    Workload("docvqa", "DocVQA_VAL", "document", (1700, 2300), (2200, 2900),
             ("What is the date mentioned in this letter?", "What is the total amount?",
              "Who is the sender of this memo?", "What is the title of the document?",
              "What is the page number?", "To whom is the letter addressed?"),
             questions_per_image=4.2, answer_tokens=8),
    # InfographicVQA: tall infographics ~1000-1400 x 2400-3600; MSAC 15-23 / 3-5 (L291-295); val: 2801 questions
    # on 500 images.
    Workload("infovqa", "InfoVQA_VAL", "document", (1000, 1400), (2400, 3600),
             ("What percentage of people prefer online shopping?", "How many countries are shown?",
              "What is the title of the infographic?", "Which year has the highest value?",
              "What is the source of the data?", "How many icons are in the second section?",
              "What color is used for the largest group?"),
             questions_per_image=5.6, answer_tokens=8),
    # OCRBench word/line crops: 300-800 x 100-200; MSAC 9-24 / 5-8 (L296-300); VQA prompt; one question each.
    Workload("ocrbench", "OCRBench", "crop", (300, 800), (100, 200),
             ("what is written in the image?", "What is the number in the image?",
              "what is the word in the image?"),
             questions_per_image=1.0, answer_tokens=8),
    # POPE: COCO photos ~640 x 427-480; MSAC 9-24 / 5-8 (L296-300); 8910 yes/no questions on 500 images (three
    # splits asking about the same images).
    Workload("pope", "POPE", "photo", (600, 640), (420, 480),
             tuple(f"Is there a {o} in the image?" for o in _POPE_OBJECTS),
             questions_per_image=10.3, answer_tokens=2),
    # MME photos: ~640-1000 x 480-750; MSAC 5-11 / 2-6 (L306-310); Y/N prompt with a space; a yes and a no
    # question per image.
    Workload("mme", "MME", "photo", (640, 1000), (480, 750),
             ("Is there a dog in this image?", "Are there two cars in this image?", "Is the sky blue in this image?"),
             questions_per_image=2.0, answer_tokens=2),
)}

_WORDS = ("invoice total amount date memo department budget report account payment received balance quarter annual "
          "company address phone number reference subject meeting committee director research program project "
          "schedule page table figure summary revenue cost tax net gross item quantity price description").split()


def workload_tiling(workload: Workload, tiles: str | None = None):
    """The MSAC tiling VLMEvalKit's MiniMonkey wrapper uses for the workload's dataset (or ``tiles``,
    'MIN-MAX/MIN2-MAX2', the runner's ``--tiles`` override); ValueError for anything but MSAC tiles."""
    from minimonkey_eval.models.registry import MINIMONKEY
    from minimonkey_eval.models.settings import MSAC
    from minimonkey_eval.models.tile_profiles import resolve_tiles

    s = resolve_tiles(MINIMONKEY, workload.dataset, "vlmevalkit", tiles)
    if s.kind != MSAC:
        raise ValueError(f"{tiles!r}: the benchmark needs MSAC tiles 'MIN-MAX/MIN2-MAX2'")
    return s


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def make_image(kind: str, size: tuple[int, int], rng: random.Random):
    """A deterministic synthetic image: a text page, a word crop, or a photo-like scene."""
    import numpy as np
    from PIL import Image, ImageDraw

    w, h = size
    if kind == "document":
        img = Image.new("RGB", size, (250, 250, 246))
        draw = ImageDraw.Draw(img)
        fs = rng.randint(24, 34)
        margin = w // 12
        draw.text((margin, margin), " ".join(rng.choice(_WORDS).upper() for _ in range(4)), fill=(10, 10, 10),
                  font=_font(fs * 2))
        y, font = margin + fs * 4, _font(fs)
        while y < h - margin - fs:
            if rng.random() < 0.08:  # a ruled table row
                draw.rectangle((margin, y, w - margin, y + int(fs * 1.6)), outline=(40, 40, 40), width=2)
                for k in range(1, 4):
                    x = margin + k * (w - 2 * margin) // 4
                    draw.line((x, y, x, y + int(fs * 1.6)), fill=(40, 40, 40), width=2)
            line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14)))
            if rng.random() < 0.3:
                date = f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/19{rng.randint(50, 99)}"
                line += f" {date} ${rng.randint(10, 9999)}.00"
            draw.text((margin, y), line, fill=(25, 25, 25), font=font)
            y += int(fs * 1.7)
        return img
    if kind == "crop":
        bg = tuple(rng.randint(170, 250) for _ in range(3))
        img = Image.new("RGB", size, bg)
        draw = ImageDraw.Draw(img)
        text = " ".join(rng.choice(_WORDS).upper() for _ in range(rng.randint(1, 2)))
        ink = tuple(rng.randint(0, 80) for _ in range(3))
        draw.text((w // 12, h // 5), text, fill=ink, font=_font(max(12, h // 2)))
        return img
    if kind == "photo":
        gen = np.random.default_rng(rng.randrange(1 << 30))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([(xx / w) * gen.uniform(60, 200) + (yy / h) * gen.uniform(30, 120) + gen.uniform(0, 60)
                         for _ in range(3)], axis=-1)
        noise = gen.normal(0, 12, size=(h, w, 3))
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(rng.randint(4, 9)):
            x0, y0 = rng.randint(0, w - 40), rng.randint(0, h - 40)
            x1, y1 = rng.randint(x0 + 20, min(w, x0 + w // 2)), rng.randint(y0 + 20, min(h, y0 + h // 2))
            fill = tuple(rng.randint(0, 255) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        return img
    raise ValueError(f"unknown image kind {kind!r}")


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def group_sizes(n: int, questions_per_image: float) -> list[int]:
    """Questions per image for ``n`` rows: image k gets ``round((k+1)q) - round(kq)`` (mean ``q``), the last one
    what is left."""
    q = max(1.0, float(questions_per_image))
    sizes: list[int] = []
    while sum(sizes) < n:
        k = len(sizes)
        sizes.append(max(1, _round((k + 1) * q) - _round(k * q)))
    sizes[-1] -= sum(sizes) - n
    return sizes


def unique_images(n: int, workload: Workload) -> int:
    """How many images :func:`write_workload` writes for ``n`` rows of ``workload``."""
    return len(group_sizes(n, workload.questions_per_image))


def write_workload(workload: Workload, n: int, root: str | Path, seed: int = 0) -> Path:
    """``<root>/<workload.dataset>.tsv`` with ``n`` rows (questions) about :func:`unique_images` images; returns the
    path (recorded in the fixture manifest)."""
    import base64
    import io

    from minimonkey_eval.datasets.fixtures import record_in_manifest, sample_rows

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    rows = sample_rows(workload.dataset, n=n, seed=seed)   # the dataset's columns (answers, categories)
    rows = pd.concat([rows] * -(-n // len(rows)), ignore_index=True).iloc[:n].copy()
    rng = random.Random(f"{workload.name}-{seed}")
    images, questions, paths = [], [], []
    for k, size_k in enumerate(group_sizes(n, workload.questions_per_image)):
        size = (rng.randint(*workload.width), rng.randint(*workload.height))
        buf = io.BytesIO()
        make_image(workload.kind, size, rng).save(buf, format="JPEG", quality=90)
        first = len(images)
        asked = rng.sample(workload.questions, min(size_k, len(workload.questions)))
        for j in range(size_k):
            # the first row carries the image, the others refer to it by index (VLMEvalKit's image reference)
            images.append(base64.b64encode(buf.getvalue()).decode("ascii") if j == 0 else str(first))
            questions.append(asked[j % len(asked)])
            paths.append(f"{workload.name}_{k:05d}.jpg")
    rows["index"] = list(range(n))
    rows["image"] = images
    rows["question"] = questions
    if "image_path" in rows:
        rows["image_path"] = paths
    path = root / f"{workload.dataset}.tsv"
    rows.to_csv(path, sep="\t", index=False)
    record_in_manifest(root, [path])
    return path
