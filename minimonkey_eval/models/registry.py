"""Model registry: one record per model the harness runs, the only Python module that spells the model names.

Data, not code (like ``datasets/registry.py`` for benchmarks): every fact about a model that more than one module
needs is a field of its :class:`ModelSpec` in :data:`MODELS`. CLI choices, the runner (checkpoint env var, label,
run name), the VLMEvalKit wrappers, the tile and prompt tables' family lookup, the published-number lookup, the
report's order and compared pair, and the tiny fixture writer all read it; none re-lists names.

Adding a model = one :class:`ModelSpec` here (or :func:`register` at run time) + its tile / prompt rows when its
family is new. Pure data: no torch, no vlmeval.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MINIMONKEY = "minimonkey"   # Mini-Monkey's own wrapper: MSAC tiles, its prompt rules (VLMEvalKit ``MiniMonkey``)
INTERNVL2 = "internvl2"     # VLMEvalKit ``InternVLChat(version='V2.0')``: dynamic tiles, InternVL2's prompt rules
FAMILIES = (MINIMONKEY, INTERNVL2)


@dataclass(frozen=True)
class ModelSpec:
    name: str                  # CLI ``--model`` / run.json ``model`` / VLMEvalKit model name
    label: str                 # report label
    env_var: str               # checkpoint folder when ``--model-path`` is not given
    family: str                # wrapper, prompt rules and tile table family (``MINIMONKEY`` | ``INTERNVL2``)
    fixture: str               # ``tiny_checkpoint`` family member with this model's LLM ('1b' | '2b' | '4b')
    # Card rows that publish this model, in priority order: (card key, row name) -- see ``eval/published.py``.
    published: tuple[tuple[str, str], ...] = ()
    published_msac: bool = False   # the setting the published numbers were obtained with (MSAC on?) ...
    published_scm: bool = False    # ... and SCM on?
    demo: bool = False             # one of the demo's two default runs

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"ModelSpec {self.name!r}: family must be one of {FAMILIES}, got {self.family!r}")

    @property
    def msac_native(self) -> bool:
        """MSAC is the model's own tiling (``--msac`` is implied and not part of its label / run name)."""
        return self.family == MINIMONKEY


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a model record; returns it. Names must be usable as run-folder names."""
    if not re.fullmatch(r"[A-Za-z0-9._+=-]+", spec.name):
        raise ValueError(f"model name {spec.name!r}: use letters, digits and ._+=- only")
    MODELS[spec.name] = spec
    return spec


for _spec in (
    ModelSpec("InternVL2-2B", "InternVL2-2B", "INTERNVL2_PATH", INTERNVL2, "2b",
              published=(("minimonkey", "InternVL2-2B"), ("mini_internvl", "Mini-InternVL2-2B")), demo=True),
    ModelSpec("MiniMonkey", "Mini-Monkey", "MINIMONKEY_PATH", MINIMONKEY, "2b",
              published=(("minimonkey", "Mini-Monkey"),), published_msac=True, demo=True),
    ModelSpec("Mini-InternVL2-1B", "Mini-InternVL2-1B", "MINI_INTERNVL2_1B_PATH", INTERNVL2, "1b",
              published=(("mini_internvl", "Mini-InternVL2-1B"),)),
    ModelSpec("Mini-InternVL2-4B", "Mini-InternVL2-4B", "MINI_INTERNVL2_4B_PATH", INTERNVL2, "4b",
              published=(("mini_internvl", "Mini-InternVL2-4B"),)),
):
    register(_spec)

# The pair the report compares (deltas, per-sample diff, significance): the paper's model and its baseline.
PAIR_NEW, PAIR_BASE = "MiniMonkey", "InternVL2-2B"


def model_names() -> tuple[str, ...]:
    """Every registered name, in registry (= report) order."""
    return tuple(MODELS)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def get_model(name: str) -> ModelSpec:
    """The record of ``name`` (exact, else ignoring case and separators: ``'mini_monkey'``); one-line ValueError."""
    if name in MODELS:
        return MODELS[name]
    for spec in MODELS.values():
        if _key(spec.name) == _key(name):
            return spec
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def fixture_models() -> dict[str, str]:
    """Tiny fixture member -> the model name it stands for (the family's plain member; '2b' = InternVL2-2B)."""
    out: dict[str, str] = {}
    for spec in MODELS.values():
        if spec.family == INTERNVL2:
            out.setdefault(spec.fixture, spec.name)
    return dict(sorted(out.items()))
