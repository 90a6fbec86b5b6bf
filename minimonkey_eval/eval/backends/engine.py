"""VLMEvalKit model wrappers over our engine: ``MiniMonkeyVLM`` and ``InternVL2VLM``.

They are ``vlmeval.vlm.base.BaseModel`` subclasses with the official wrappers' seams, so VLMEvalKit's own
runner can drive them (``register()``) and our batched runner can call ``generate_batch``:

* ``use_custom_prompt`` / ``build_prompt``: identical to ``vlmeval.vlm.MiniMonkey`` / ``InternVLChat`` (V2.0),
  via the rule tables of ``minimonkey_eval.eval.backends.prompts``;
* ``generate_inner(message, dataset)``: one sample; ``generate_batch(messages, dataset)``: many, grouped by
  tile setting, one ``engine.generate`` call per group; ``describe`` (images, question, tile setting) is what our
  runner hands to the same pipeline (``models.pipeline``) that ``engine.generate`` runs;
* tiles and ``max_new_tokens`` come from ``minimonkey_eval.models.tile_profiles`` (``tile_profile``, ``tiles``).

``InternVL2VLM`` also serves Mini-InternVL2-1B / -4B (``model_name``); ``msac=True`` gives it Mini-Monkey's
multi-scale tiles (the MiniMonkey ``tile_profile`` table) while keeping InternVL2's prompts and MMMU upscaling.
"""
from __future__ import annotations

import os
from dataclasses import replace
from functools import partial

from vlmeval.vlm.base import BaseModel

from minimonkey_eval.eval.backends import prompts
from minimonkey_eval.models.registry import INTERNVL2, MINIMONKEY, PAIR_BASE, PAIR_NEW, get_model
from minimonkey_eval.models.registry import MODELS as MODEL_SPECS
from minimonkey_eval.models.settings import ScmConfig, Tiling
from minimonkey_eval.models.tile_profiles import max_new_tokens_for, resolve_tiles


def _torch_dtype(dtype):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}: use bfloat16, float16 or float32")
    return value


class _EngineVLM(BaseModel):
    """Shared wrapper logic; subclasses say which prompt family, tile table and upscale rule apply."""

    INSTALL_REQ = False
    INTERLEAVE = True

    def __init__(self, model_name: str, tile_model: str, upscale_profile: str, model_path=None,
                 tile_profile="vlmevalkit", tiles=None, scm: ScmConfig | None = None, dtype="bfloat16",
                 device="cuda", engine=None, max_new_tokens=None, attn_implementation="sdpa"):
        super().__init__()
        self.model_name = model_name
        self.tile_model = tile_model
        self.tile_profile = tile_profile
        self.upscale_profile = upscale_profile
        self.tiles = tiles
        self.scm = scm   # ScmConfig, or None: SCM off
        self.max_new_tokens = max_new_tokens
        resolve_tiles(tile_model, None, tile_profile, tiles)   # bad profile / tiles string: fail now, not mid-run
        self.model_path = model_path
        if engine is None:
            env = get_model(model_name).env_var
            self.model_path = model_path or os.environ.get(env)
            if not self.model_path:
                raise ValueError(f"{model_name}: no model_path given and ${env} is not set")
            from minimonkey_eval.models import Engine

            engine = Engine.from_pretrained(self.model_path, dtype=_torch_dtype(dtype), device=device,
                                            attn_implementation=attn_implementation)
        self.engine = engine

    # ---- prompts (VLMEvalKit seams) -------------------------------------------------------------------------
    def use_custom_prompt(self, dataset):
        return prompts.use_custom_prompt(self.model_name, dataset, self.upscale_profile)

    def build_prompt(self, line, dataset=None):
        assert self.use_custom_prompt(dataset), f"{self.model_name}: no custom prompt for {dataset!r}"
        return prompts.build_message(self.model_name, line, dataset, self.dump_image(line, dataset),
                                     self.upscale_profile)

    # ---- generation -----------------------------------------------------------------------------------------
    def tiling_for(self, dataset, n_images: int = 1) -> Tiling:
        """The tiling for one sample of ``dataset`` with ``n_images`` images.
        A tile profile's first-image upscale belongs to its wrapper: dropped when this model's wrapper differs
        (InternVL2 + MSAC keeps InternVL2's own MMMU upscale, ``prompts.prepare_images``)."""
        setting = resolve_tiles(self.tile_model, dataset, self.tile_profile, self.tiles, n_images=n_images)
        if setting.upscale_first and self.upscale_profile != self.tile_profile:
            setting = replace(setting, upscale_first=False)
        return setting

    def _prepare(self, message, dataset):
        images = [x["value"] for x in message if x["type"] == "image"]
        question = prompts.assemble_question(self.model_name, message, dataset)
        images = prompts.prepare_images(self.model_name, images, dataset, self.upscale_profile)
        return (images, question), self.tiling_for(dataset, len(images))

    def _checked(self, message):
        """``message`` checked and normalised as ``BaseModel.generate`` does."""
        assert self.check_content(message) in ("str", "dict", "liststr", "listdict"), f"bad message: {message}"
        message = self.preproc_content(message)
        assert message is not None and self.check_content(message) == "listdict"
        for item in message:
            assert item["type"] in self.allowed_types, f"bad input type: {item['type']}"
        return message

    def describe(self, message, dataset=None):
        """The wrapper's half of answering ``message`` (cheap, no pixels): ``((images, question), tile setting,
        max_new_tokens)``. The runner's pipeline tiles, batches and answers it."""
        sample, setting = self._prepare(self._checked(message), dataset)
        return sample, setting, self.max_new_tokens or max_new_tokens_for(self.tile_model, dataset, self.tile_profile)

    def generate_inner(self, message, dataset=None):
        return self.generate_batch([message], dataset)[0]

    def generate_batch(self, messages, dataset=None) -> list[str]:
        """Answers for several messages (each checked and normalised like ``BaseModel.generate``), in order: one
        ``engine.generate`` (the one pipeline) per tile setting."""
        described = [self.describe(m, dataset) for m in messages]
        groups: dict = {}
        for i, (_, setting, max_new) in enumerate(described):
            groups.setdefault((setting, max_new), []).append(i)
        answers: list = [None] * len(messages)
        for (setting, max_new), idx in groups.items():
            outs = self.engine.generate([described[i][0] for i in idx], tiling=setting, max_new_tokens=max_new,
                                        scm=self.scm)
            for i, out in zip(idx, outs):
                answers[i] = out
        return answers


class MiniMonkeyVLM(_EngineVLM):
    """Mini-Monkey as VLMEvalKit's ``MiniMonkey`` (``tile_profile='vlmevalkit'``) or the Monkey repo's eval
    wrapper (``'monkey-repo'``: its tiles, prompts, 1024 new tokens, multi-image second scale and MMMU first-scale
    upscale, see ``tile_profiles`` and ``prompts``). ``model_name``: any registered model of the ``minimonkey``
    family."""

    def __init__(self, model_path=None, tile_profile="vlmevalkit", tiles=None, scm: ScmConfig | None = None,
                 dtype="bfloat16", device="cuda", engine=None, max_new_tokens=None, attn_implementation="sdpa",
                 model_name=PAIR_NEW):
        if get_model(model_name).family != MINIMONKEY:
            raise ValueError(f"{model_name!r} is not of the {MINIMONKEY!r} family; use InternVL2VLM")
        super().__init__(model_name, MINIMONKEY, tile_profile, model_path, tile_profile, tiles, scm,
                         dtype, device, engine, max_new_tokens, attn_implementation)


class InternVL2VLM(_EngineVLM):
    """InternVL2-2B (or Mini-InternVL2-1B / -4B, any registered ``internvl2`` family model) as VLMEvalKit's
    ``InternVLChat(version='V2.0')``.

    ``msac=True`` swaps the dynamic tiles for Mini-Monkey's MSAC table (``tile_profile`` then names a MiniMonkey
    profile); prompts and the MMMU upscale stay InternVL2's.
    """

    def __init__(self, model_path=None, model_name=PAIR_BASE, msac=False, tile_profile="vlmevalkit", tiles=None,
                 scm: ScmConfig | None = None, dtype="bfloat16", device="cuda", engine=None, max_new_tokens=None,
                 attn_implementation="sdpa"):
        if model_name not in MODEL_SPECS or MODEL_SPECS[model_name].family != INTERNVL2:
            known = ", ".join(k for k, spec in MODEL_SPECS.items() if spec.family == INTERNVL2)
            raise ValueError(f"unknown InternVL2 model {model_name!r}; known: {known}")
        self.msac = bool(msac)
        super().__init__(model_name, MINIMONKEY if msac else INTERNVL2, "vlmevalkit", model_path, tile_profile,
                         tiles, scm, dtype, device, engine, max_new_tokens, attn_implementation)


def wrapper_for(name: str) -> partial:
    """The wrapper constructor VLMEvalKit's model table gets for a registered model."""
    if get_model(name).family == MINIMONKEY:
        return partial(MiniMonkeyVLM, model_name=name)
    return partial(InternVL2VLM, model_name=name)


def register(**kwargs) -> dict:
    """Add our models to ``vlmeval.config.supported_VLM`` (``kwargs`` go to every constructor); returns them.

    Note: this replaces VLMEvalKit's own ``'InternVL2-2B'`` entry (HF remote code) with ours.
    """
    from vlmeval.config import supported_VLM

    entries = {}
    for name in MODEL_SPECS:
        p = wrapper_for(name)
        entries[name] = partial(p.func, *p.args, **{**p.keywords, **kwargs})
    supported_VLM.update(entries)
    return entries
