"""Drawing helpers of the synthetic fixtures: text pages, bar charts, base64 PNG cells, seeded choices."""
from __future__ import annotations

import base64
import io
import random
import string
import zlib

from PIL import Image, ImageDraw, ImageFont


# ----------------------------------------------------------------------------------------------- drawing
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_image(rng: random.Random, size: tuple[int, int], lines: list[str], font_size: int = 0,
               shapes: int = 3) -> Image.Image:
    """A light background with a few pale shapes and dark text lines stacked from the top-left."""
    w, h = size
    bg = tuple(rng.randint(215, 250) for _ in range(3))
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    for _ in range(shapes):
        x0, y0 = rng.randint(0, w - 2), rng.randint(0, h - 2)
        x1, y1 = rng.randint(x0 + 1, w), rng.randint(y0 + 1, h)
        fill = tuple(rng.randint(160, 235) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    font_size = font_size or max(10, min(w // 14, h // (len(lines) + 2), 40))
    font = _font(font_size)
    y = max(2, font_size // 2)
    for line in lines:
        draw.text((max(2, w // 20), y), line, fill=(20, 20, 30), font=font)
        y += int(font_size * 1.4)
    return img


def draw_bar_chart(rng: random.Random, size: tuple[int, int], labels: list[str], values: list[int],
                   title: str = "") -> Image.Image:
    """Bars with their value printed on top and the label below (a ChartQA / HallusionBench style chart)."""
    w, h = size
    img = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(img)
    font = _font(max(10, h // 24))
    if title:
        draw.text((10, 6), title, fill=(0, 0, 0), font=font)
    top, bottom = h // 6, h - h // 8
    slot = (w - 20) // max(1, len(values))
    vmax = max(values) or 1
    for i, (lab, val) in enumerate(zip(labels, values)):
        x0 = 10 + i * slot + slot // 5
        x1 = 10 + (i + 1) * slot - slot // 5
        y0 = bottom - int((bottom - top) * val / vmax)
        color = tuple(rng.randint(40, 200) for _ in range(3))
        draw.rectangle((x0, y0, x1, bottom), fill=color)
        draw.text((x0, max(top - 14, y0 - font.size - 2)), str(val), fill=(0, 0, 0), font=font)
        draw.text((x0, bottom + 4), lab, fill=(0, 0, 0), font=font)
    return img


def encode_image(img: Image.Image) -> str:
    """PNG bytes, base64 (what VLMEvalKit's decode_base64_to_image reads)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def seeded_rng(key: str, seed: int) -> random.Random:
    return random.Random(zlib.crc32(f"{key}:{seed}".encode()))


def _distractors(rng: random.Random, pool: tuple[str, ...], correct: str, k: int) -> list[str]:
    return rng.sample([w for w in pool if w != correct], k)


def mcq_options(rng: random.Random, correct: str, pool: tuple[str, ...], n_opt: int) -> tuple[dict, str]:
    """Shuffle the correct option among distractors: ({'A': .., 'B': ..}, answer letter)."""
    opts = _distractors(rng, pool, correct, n_opt - 1) + [correct]
    rng.shuffle(opts)
    letters = string.ascii_uppercase[:n_opt]
    return dict(zip(letters, opts)), letters[opts.index(correct)]
