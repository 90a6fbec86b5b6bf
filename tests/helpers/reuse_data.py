"""A VLMEvalKit-shaped TSV whose questions share images through VLMEvalKit's image references (not a test module).

``write_shared_tsv(root)`` writes ``<root>/OCRBench.tsv`` (OCRBench's columns): ``images`` images, each asked
``per_image`` different questions; the rows are interleaved (image 0, image 1, ..., image 0, image 1, ...), the
first row of an image carries it (base64) and the later ones hold that row's index in their ``image`` cell.
"""
from __future__ import annotations

from pathlib import Path

DATASET = "OCRBench"
QUESTIONS = ("what is written in the image?", "What is the number in the image?", "Describe the image in detail.",
             "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", "Which colour is the text?",
             "How many words are there?")
ONE_TILE = "1-1/1-1"   # 256 image tokens: the tiny model's answers then depend on the question


def noise_image(k: int, size=(200, 120)) -> str:
    """A base64 PNG of random pixels (the tiny model's answers then depend on the question, not only the image)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(k).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_shared_tsv(root, images: int = 2, per_image: int = 3, seed: int = 0) -> Path:
    from minimonkey_eval.datasets.fixtures import record_in_manifest, sample_rows

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    carriers = sample_rows(DATASET, n=images, seed=seed)
    rows = []
    for q in range(per_image):
        for k in range(images):
            row = carriers.iloc[k].to_dict()
            index = q * images + k
            row.update(index=index, image=noise_image(seed * 1000 + k) if q == 0 else str(k),
                       question=QUESTIONS[q % len(QUESTIONS)], answer=str(["word", str(index)]))
            rows.append(row)
    import pandas as pd

    path = root / f"{DATASET}.tsv"
    pd.DataFrame(rows, columns=list(carriers.columns)).to_csv(path, sep="\t", index=False)
    record_in_manifest(root, [path])
    return path
