"""The engine backend: a registered model (``--model MiniMonkey`` ...) answered by our engine and pipeline.

:class:`EngineBackend` implements ``eval.run.backend.Backend`` with ``models.Engine`` (loaded on first use, or the
one handed in) behind the VLMEvalKit wrappers of ``engine.py`` (``MiniMonkeyVLM`` / ``InternVL2VLM``: VLMEvalKit's
prompts, the tile profile's tiles and answer length), ``models.pipeline.Pipeline`` (staging threads, length
buckets, out-of-memory backoff), the authors' setting (``authors_setting``: bf16, no fewer-tiles retry, what the
run record says about it) and ``bench``'s reference mode (``reference``: batch 1, no overlap, VLMEvalKit's tiler,
eager attention). Questions about one image are known from the TSV (``datasets.image_groups``: VLMEvalKit's image
references and repeated image paths): :meth:`EngineBackend.describe` sets ``Job.image_key`` from them, so the
pipeline computes each image once without hashing it (``RunOptions.reuse``; ``--no-reuse`` turns it off), and
:meth:`EngineBackend.result_fields` sums what that saved into the run record. The naming rules of such runs
(``label_for``, ``default_run_name``, ``split_tiles_option``, ``model_path_for``) live here too. Imports nothing
heavy at module level.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from minimonkey_eval.datasets.indexes import index_key
from minimonkey_eval.eval.backends import authors_setting
from minimonkey_eval.eval.backends.base import message_job
from minimonkey_eval.eval.run.options import RunError, RunOptions
from minimonkey_eval.models.registry import MINIMONKEY, get_model, model_names
from minimonkey_eval.models.settings import MSAC, ScmConfig, default_batch_size, is_tiles_text, parse
from minimonkey_eval.models.tile_profiles import get_profile, max_new_tokens_for, resolve_tiles

DEFAULT_TILE_PROFILE = "vlmevalkit"


# --------------------------------------------------------------------------------------------------- naming
def split_tiles_option(text: str | None) -> tuple[str, str | None]:
    """``--tiles``: ``(profile, override)``; a ``MIN-MAX[/MIN2-MAX2]`` string is an override of the default profile."""
    if text is None or not str(text).strip():
        return DEFAULT_TILE_PROFILE, None
    text = str(text).strip()
    if is_tiles_text(text):
        return DEFAULT_TILE_PROFILE, re.sub(r"\s+", "", text)
    return text, None


def model_path_for(model: str, given: str | None) -> Path:
    env = get_model(model).env_var
    path = given or os.environ.get(env)
    if not path:
        raise RunError(f"{model}: no --model-path given and ${env} is not set")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise RunError(f"{path}: model directory not found (--model-path / ${env})")
    return path.resolve()


def label_for(model: str, msac: bool, scm: bool, profile: str, override: str | None) -> str:
    spec = get_model(model)
    label = spec.label
    if msac and not spec.msac_native:
        label += " + MSAC"
    if scm:
        label += " + SCM"
    if profile != DEFAULT_TILE_PROFILE:
        label += f" ({profile} tiles)"
    if override:
        label += f" (tiles {override})"
    return label


def default_run_name(model: str, msac: bool, scm: ScmConfig | None, profile: str, override: str | None) -> str:
    name = model
    if msac and not get_model(model).msac_native:
        name += "_msac"
    if scm is not None:
        name += "_scm" + ("" if scm.ratio == 0.5 else f"{scm.ratio:g}") + ("_fixobo" if scm.fix_off_by_one else "")
    if profile != DEFAULT_TILE_PROFILE:
        name += f"_{profile}"
    if override:
        name += "_tiles" + override.replace("/", "_")
    return name


# --------------------------------------------------------------------------------------------------- the backend
class EngineBackend:
    """A registered model on our engine (``engine``: an already loaded ``models.Engine`` to use; else loaded from
    the model path on first use and dropped by :meth:`release`)."""

    def __init__(self, opts: RunOptions, ctx, engine=None):
        if opts.model not in model_names():
            raise RunError(f"unknown --model {opts.model!r}; choose one of {', '.join(model_names())}")
        self.opts, self.ctx = opts, ctx
        self.profile, self.override = split_tiles_option(opts.tiles)
        spec = get_model(opts.model)
        self.tile_model = MINIMONKEY if (spec.msac_native or opts.msac) else spec.family   # tile table family
        try:
            get_profile(self.tile_model, self.profile)
            if self.override:
                parse(self.override)
        except ValueError as exc:
            raise RunError(f"--tiles: {exc}") from None
        self.msac = self.tile_setting(None).kind == MSAC
        self.model_path = model_path_for(opts.model, opts.model_path)
        self.label = label_for(opts.model, self.msac, opts.scm is not None, self.profile, self.override)
        self.default_run_name = default_run_name(opts.model, self.msac, opts.scm, self.profile, self.override)
        self.prediction_prefix = None    # VLMEvalKit's own: the model name
        self._engine, self._own_engine = engine, engine is None
        device = engine.device if engine is not None else ctx.device_for(opts.device)
        self.batch_size = opts.batch_size or default_batch_size(device)
        self._vlm = None
        self._image_groups: dict[str, dict[str, str]] = {}   # dataset -> index key -> image group (from the TSV)

    # ---- the model ------------------------------------------------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            from minimonkey_eval.models import Engine

            device = self.ctx.device_for(self.opts.device)
            dtype = self.opts.dtype or authors_setting.default_dtype(self.profile)
            self._engine = Engine.from_pretrained(self.model_path, dtype=dtype, device=device,
                                                  attn_implementation=self.opts.attn)
            self._engine.normalize_on_device = self.opts.normalize_on_device
        return self._engine

    @property
    def vlm(self):
        """The VLMEvalKit wrapper over the engine (VLMEvalKit's prompts and the tile profile's settings)."""
        if self._vlm is None:
            from minimonkey_eval.eval.backends.engine import InternVL2VLM, MiniMonkeyVLM

            common = dict(tile_profile=self.profile, tiles=self.override, scm=self.opts.scm,
                          engine=self.engine, max_new_tokens=self.opts.max_new_tokens,
                          model_path=str(self.model_path))
            if get_model(self.opts.model).msac_native:
                self._vlm = MiniMonkeyVLM(model_name=self.opts.model, **common)
            else:
                self._vlm = InternVL2VLM(model_name=self.opts.model, msac=self.opts.msac, **common)
        return self._vlm

    @property
    def stage_threads(self) -> int:
        """Threads tiling and tokenizing: ``--stage-threads``, else ``pipeline.default_threads()`` (one per spare
        core of this rank's share of the machine, at most 8)."""
        from minimonkey_eval.models.planning import default_threads

        if self.opts.stage_threads is not None:
            return max(1, self.opts.stage_threads)
        return default_threads()

    def pipeline(self, dataset, profile=None):
        from minimonkey_eval.models.pipeline import Pipeline

        self.vlm.set_dump_image(dataset.dump_image)   # loads the model
        options = dict(scm=self.opts.scm)
        if not authors_setting.retries_fewer_tiles(self.profile):   # the authors' setting keeps its tiles
            options["single_oom"] = authors_setting.oom_fallback
        if self.opts.reference:
            from minimonkey_eval.eval.backends.reference import EagerPipeline, reference_pipeline

            return EagerPipeline(reference_pipeline(self.engine, profile=profile, reuse=False, **options),
                                 self.engine.model)
        self._image_groups[dataset.dataset_name] = self.image_groups(dataset) if self.opts.reuse else {}
        return Pipeline(self.engine, batch_size=self.batch_size, threads=self.stage_threads,
                        overlap=self.opts.prefetch, profile=profile, reuse=self.opts.reuse, **options)

    @staticmethod
    def image_groups(dataset) -> dict[str, str]:
        """``index key -> image group`` of the dataset's TSV (empty when it cannot be read: images are then known
        by the hash of their bytes)."""
        from minimonkey_eval.datasets.image_groups import dataset_tsv, tsv_image_groups

        path = dataset_tsv(dataset)
        try:
            return tsv_image_groups(path) if path is not None else {}
        except Exception:  # noqa: BLE001 - only the hint is lost: the pipeline hashes the images
            return {}

    def describe(self, dataset, line):
        """A row as a pipeline Job: images, question, tile setting, max_new_tokens; a failure names its stage
        ('prompt': the message could not be built; 'prepare': the wrapper could not make the sample)."""
        job = message_job(self.vlm, dataset, line)
        if job.error is not None:
            return job
        try:
            (images, question), setting, max_new = self.vlm.describe(job.extra["message"], dataset.dataset_name)
        except Exception as exc:  # noqa: BLE001
            return job.fail("prepare", exc)
        job.images, job.question, job.tiling, job.max_new_tokens = list(images), question, setting, max_new
        group = self._image_groups.get(dataset.dataset_name, {}).get(index_key(line["index"]))
        if group is not None:   # the TSV says which rows share this image: no hashing needed
            job.image_key = ("tsv", dataset.dataset_name, group)
        return job

    def release(self) -> None:
        self._vlm = None
        if self._own_engine:
            self._engine = None

    # ---- what the run record says --------------------------------------------------------------------------------
    def tile_setting(self, dataset: str | None):
        return resolve_tiles(self.tile_model, dataset, self.profile, self.override)

    def tiles_record(self, dataset: str) -> dict:
        setting = self.tile_setting(dataset)
        return {"kind": setting.kind, "tiles": setting.describe(),
                "max_new_tokens": (self.opts.max_new_tokens
                                   or max_new_tokens_for(self.tile_model, dataset, self.profile)),
                **authors_setting.dataset_record(self.opts.model, self.tile_model, self.profile, dataset,
                                                 self.override)}

    def identity(self) -> dict:
        return {"model": self.opts.model, "msac": self.msac, "tile_profile": self.profile,
                "tiles_override": self.override, "scm": self.opts.scm is not None,
                "scm_ratio": float(self.opts.scm.ratio) if self.opts.scm else None,
                "scm_fix_off_by_one": bool(self.opts.scm and self.opts.scm.fix_off_by_one),
                "max_new_tokens": self.opts.max_new_tokens, "demo": bool(self.opts.demo),
                "dtype": self.run_dtype, "attn": self.opts.attn}

    @property
    def run_dtype(self) -> str:
        """The dtype the predictions are made in (torch name): the engine's, else --dtype (or the tile profile's
        default) resolved for the device."""
        if self._engine is not None:
            return str(self._engine.dtype).replace("torch.", "")
        from minimonkey_eval.models.options import resolve_dtype

        dtype = self.opts.dtype or authors_setting.default_dtype(self.profile)
        return resolve_dtype(dtype, self.ctx.device_for(self.opts.device) or "cpu")

    def record_fields(self) -> dict:
        fields = {"tile_model": self.tile_model, "normalize_on_device": self.opts.normalize_on_device,
                  "wrapper": authors_setting.run_record(self.profile), "reuse": bool(self.opts.reuse)}
        if self._engine is not None:
            fields.update(dtype=str(self._engine.dtype).replace("torch.", ""), device=str(self._engine.device))
        return fields

    def result_fields(self, records: list[dict]) -> dict:
        return {**authors_setting.result_extras(self.profile, records),
                "reuse": reuse_summary(records, self.opts.reuse and not self.opts.reference)}


def reuse_summary(records: list[dict], enabled: bool) -> dict:
    """The run record's ``results[dataset]['reuse']``: images / tiles the ViT would encode one sample at a time and
    the passes it actually ran, prompt vs prefilled LLM tokens, and what was saved, summed over the prediction
    records that carry the counters (``samples``; records of older runs carry none)."""
    keys = ("images", "vit_passes", "tiles", "vit_tiles", "prompt_tokens", "prefill_tokens")
    totals = dict.fromkeys(keys, 0)
    counted = 0
    for record in records:
        counts = record.get("reuse")
        if record.get("failed") or not isinstance(counts, dict):
            continue
        counted += 1
        for key in keys:
            value = counts.get(key, 0)
            totals[key] += int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
    return {"enabled": bool(enabled), "samples": counted, **totals,
            "saved_vit_passes": totals["images"] - totals["vit_passes"],
            "saved_vit_tiles": totals["tiles"] - totals["vit_tiles"],
            "saved_prefill_tokens": totals["prompt_tokens"] - totals["prefill_tokens"]}
