"""The VLMEvalKit-style reference mode the fast path is checked and benchmarked against.

Same pipeline (``models.pipeline.Pipeline``), reference settings (:func:`reference_pipeline`): batch size 1, one
sample at a time in input order, staged on the calling thread (no overlap), tiles from VLMEvalKit's own
``load_image`` / ``load_image2`` (:func:`reference_prepare`; imported lazily, the engine tiler is used with a warning
when vlmeval is not importable), pixel values in the official order ``s1[:-1] + s2[:-1] + s1[-1:]``, and eager
attention (:func:`attention_implementation` switches the model for the run and restores it after;
:class:`EagerPipeline` is the engine backend's reference-mode pipeline, answering inside it).

Kept out of ``minimonkey_eval.models`` so that the engine package never imports vlmeval.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from minimonkey_eval.models.attention import attention_of
from minimonkey_eval.models.engine import Engine, tile_image
from minimonkey_eval.models.pipeline import Pipeline
from minimonkey_eval.models.planning import Job, image_size
from minimonkey_eval.models.settings import DYNAMIC, MSAC
from minimonkey_eval.models.tiling import Tiles, candidate_grids, closest_grid

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def attention_implementation(model, implementation: str = "eager"):
    """Switch a loaded transformers model (and its text/vision sub-configs) to ``implementation``; restore after.

    transformers 5 reads the config's kernel at every forward (attention interface and mask builder), so the public
    ``set_attn_implementation`` takes effect at run time; the previous per-config values are put back.
    """
    cfg = model.config
    saved = {"": attention_of(cfg)}
    for key in cfg.sub_configs:
        sub = getattr(cfg, key, None)
        if sub is not None:
            saved[key] = attention_of(sub)
    model.set_attn_implementation(implementation)
    try:
        yield model
    finally:
        model.set_attn_implementation(saved)


def _vlmeval_loaders(kind: str):
    """(load_image, load_image2) from VLMEvalKit for ``kind``, or a string saying why not."""
    try:
        if kind == MSAC:
            from vlmeval.vlm.minimonkey import load_image, load_image2
            return load_image, load_image2
        from vlmeval.vlm.internvl.utils import load_image
        return load_image, None
    except Exception as exc:  # noqa: BLE001 - vlmeval missing, or failing to import its heavy dependencies
        return f"vlmeval not importable ({type(exc).__name__}: {exc})"


def reference_preprocessor(tiling) -> str:
    """Which preprocessing the reference mode uses for ``tiling`` (for logs and benchmark reports)."""
    loaders = _vlmeval_loaders(tiling.kind)
    if isinstance(loaders, str):
        return f"engine tiler ({loaders})"
    if tiling.kind == MSAC:
        return "vlmeval.vlm.minimonkey.load_image + load_image2"
    if tiling.min_num != 1:
        return "engine tiler (vlmeval.vlm.internvl load_image has no min_num; min_num != 1 requested)"
    return "vlmeval.vlm.internvl.utils.load_image"


def reference_tiles(image, tiling, scratch: str | Path | None = None) -> Tiles:
    """Tile one image exactly as VLMEvalKit's wrapper does (from a file path), falling back to the engine tiler.

    PIL images are written to a lossless PNG in ``scratch`` first (the official code only takes paths).
    """
    loaders = _vlmeval_loaders(tiling.kind)
    if isinstance(loaders, str) or (tiling.kind == DYNAMIC and tiling.min_num != 1):
        return tile_image(image, tiling)
    if isinstance(image, Image.Image):
        with tempfile.NamedTemporaryFile(suffix=".png", dir=scratch, delete=False) as handle:
            path = handle.name
        try:
            image.save(path, format="PNG")
        except (OSError, KeyError, ValueError):   # a mode PNG cannot hold (e.g. CMYK): no file for vlmeval
            os.unlink(path)
            logger.warning("reference mode: a %s image cannot be written as PNG; using the engine tiler", image.mode)
            return tile_image(image, tiling)
        try:
            return reference_tiles(path, tiling)
        finally:
            os.unlink(path)
    load_image, load_image2 = loaders
    path = str(image)
    if tiling.kind == MSAC:
        # vlmeval/vlm/minimonkey.py generate_v2, single- and multi-image branches
        pixel_values, target_aspect_ratio = load_image(path, min_num=tiling.min_num, max_num=tiling.max_num)
        pixel_values2 = load_image2(path, target_aspect_ratio=target_aspect_ratio, min_num=tiling.min_num2,
                                    max_num=tiling.max_num2)
        pixel_values = torch.cat((pixel_values[:-1], pixel_values2[:-1], pixel_values[-1:]), 0)
        grid = tuple(target_aspect_ratio)
        return Tiles(pixel_values, grid=grid, first_scale_tiles=grid[0] * grid[1])
    pixel_values = load_image(path, max_num=tiling.max_num)   # vlmeval/vlm/internvl (V2.0), min_num = 1
    width, height = image_size(path)
    grid = closest_grid(width, height, candidate_grids(tiling.min_num, tiling.max_num))
    return Tiles(pixel_values, grid=grid, first_scale_tiles=pixel_values.shape[0])


def reference_prepare(engine: Engine, job: Job):
    """The pipeline's ``prepare`` hook in reference mode: VLMEvalKit's tiles, the engine's prompt and tokens."""
    return engine.prepare_tiles([reference_tiles(image, job.tiling) for image in job.images], job.question)


def reference_pipeline(engine: Engine, profile=None, **options) -> Pipeline:
    """The pipeline with the reference settings (run it inside ``attention_implementation(model, 'eager')``)."""
    return Pipeline(engine, batch_size=1, window=1, overlap=False, bucket=False, prepare=reference_prepare,
                    profile=profile, **options)


class EagerPipeline:
    """A pipeline whose ``run`` holds the model in eager attention while it answers (the reference mode of a run)."""

    def __init__(self, pipeline: Pipeline, model):
        self.pipeline, self.model = pipeline, model

    def run(self, sources, describe):
        with attention_implementation(self.model, "eager"):
            yield from self.pipeline.run(sources, describe)


def reference_generate(engine: Engine, samples: Sequence, tiling=None, max_new_tokens: int = 512,
                       **options) -> list[str]:
    """Answers in input order, VLMEvalKit's way: batch 1, eager attention, VLMEvalKit's tiling, no overlap."""
    tiling = tiling or engine.default_tiling
    what = reference_preprocessor(tiling)
    if what.startswith("engine tiler"):
        logger.warning("reference mode: %s", what)
    answers: list = [None] * len(samples)

    def describe(index: int) -> Job:
        images, question = samples[index]
        return Job(key=index, images=list(images), question=question, tiling=tiling, max_new_tokens=max_new_tokens)

    with attention_implementation(engine.model, "eager"):
        for batch in reference_pipeline(engine, **options).run(range(len(samples)), describe):
            for job in batch:
                if job.error is not None:
                    raise job.error
                answers[job.key] = job.answer
    return answers


__all__ = ["EagerPipeline", "attention_implementation", "reference_generate", "reference_pipeline",
           "reference_preprocessor", "reference_prepare", "reference_tiles"]
