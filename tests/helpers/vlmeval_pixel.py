"""A tiny VLMEvalKit model for tests (not a test module): ``PixelVLM`` answers from its image's pixels.

Mean grey level m of the first image (0-255): yes/no questions -> 'Yes' if m >= threshold else 'No'; multiple
choice -> option letter 'ABCD'[m // 64]; anything else -> str(m). ``threshold`` comes from ``DIR/pixel.json``;
a question containing a line of ``DIR/fail.txt`` raises (a failed sample). Like VLMEvalKit's wrappers it only
implements ``generate_inner`` (no batch interface) and refuses a ``model_path`` that is not a local folder.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from vlmeval.vlm.base import BaseModel

TEST_NAME = "PixelTest-minimonkey"


def mean_grey(path) -> int:
    with Image.open(path) as im:
        g = im.convert("L")
        return int(sum(i * c for i, c in enumerate(g.histogram())) / (g.width * g.height))


def expected_answer(kind: str, image_path, threshold: int) -> str:
    """The answer PixelVLM gives, computed independently of it: kind = 'Y/N' | 'MCQ' | other."""
    m = mean_grey(image_path)
    if kind == "Y/N":
        return "Yes" if m >= threshold else "No"
    if kind == "MCQ":
        return "ABCD"[min(m // 64, 3)]
    return str(m)


class PixelVLM(BaseModel):
    INSTALL_REQ = False
    INTERLEAVE = False
    calls: list = []            # (dataset, n_images) per generate_inner call, across instances

    def __init__(self, model_path="example-org/pixel-model", **kwargs):
        super().__init__()
        folder = Path(model_path)
        if not folder.is_dir():
            raise OSError(f"{model_path} is not a local folder and downloads are off (offline mode)")
        self.folder = folder
        self.threshold = json.loads((folder / "pixel.json").read_text())["threshold"]

    def generate_inner(self, message, dataset=None):
        from vlmeval.dataset import DATASET_TYPE

        images = [m["value"] for m in message if m["type"] == "image"]
        text = "\n".join(m["value"] for m in message if m["type"] == "text")
        fail = self.folder / "fail.txt"
        if fail.exists() and any(line and line in text for line in fail.read_text().splitlines()):
            raise ValueError("pixel model: asked to fail on this question")
        PixelVLM.calls.append((dataset, len(images)))
        return expected_answer(DATASET_TYPE(dataset), images[0], self.threshold)


class PixelBatchVLM(PixelVLM):
    """PixelVLM with a batch interface (``generate_batch(messages, dataset)``) and a torch module."""

    batches: list = []

    def __init__(self, model_path="example-org/pixel-model", **kwargs):
        import torch

        super().__init__(model_path, **kwargs)
        self.model = torch.nn.Linear(10, 10)   # 110 parameters the runner counts into run.json

    def generate_batch(self, messages, dataset=None):
        PixelBatchVLM.batches.append(len(messages))
        return [self.generate(m, dataset) for m in messages]
