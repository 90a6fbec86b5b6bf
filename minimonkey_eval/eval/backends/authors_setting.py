"""The authors' evaluation setting (``--tiles monkey-repo``) beyond its tile table: what the run records and does.

The Monkey repo's ``project/mini_monkey/eval/internvl_chat.py`` (also shipped with the Mini-Monkey checkpoint) is
reproduced by three layers: its tile rows, multi-image second scale and MMMU first-scale upscale are tile-profile
data (``models/tile_profiles.py``), its prompts are a prompt table (``eval/backends/prompts.py``,
``minimonkey/monkey-repo``) and this module holds the rest, as small pure functions the engine backend calls:

* ``default_dtype``: bfloat16 weights and pixels (the file's L189-203, L372, L384), also on CPU; ``--dtype``
  overrides it and the run record says which dtype was used;
* its out-of-memory fallback (L403-405: any ``torch.cuda.OutOfMemoryError`` answers ``'A'``) is never reproduced:
  a sample that runs out of memory alone at the profile's tiles is a failed sample (no retry with fewer tiles,
  which would change the authors' tiles) whose reason carries ``OOM_FALLBACK_TAG``; ``count_oom_fallbacks`` counts
  them for the run record (``results[dataset].oom_fallbacks``) and the report's Runs sheet;
* ``dataset_record`` / ``run_record``: the behaviours in force, written to the run record (per dataset with the
  tiles, so a resumed run must agree on them; once per run with the file's lines).
"""
from __future__ import annotations

from minimonkey_eval.models.registry import MINIMONKEY, get_model
from minimonkey_eval.models.settings import MSAC
from minimonkey_eval.models.tile_profiles import get_profile, resolve_tiles

AUTHORS_PROFILE = "monkey-repo"
OOM_FALLBACK_TAG = "oom_fallback"


class OomFallback(RuntimeError):
    """A sample the authors' file would have answered ``'A'`` (out of memory at the profile's tiles)."""


def is_authors_setting(profile: str | None) -> bool:
    return profile == AUTHORS_PROFILE


def default_dtype(profile: str | None) -> str | None:
    """The dtype a run uses when ``--dtype`` is not given: bfloat16 for the authors' setting, else None (the
    engine's default: bf16 on CUDA, fp32 on CPU)."""
    return "bfloat16" if is_authors_setting(profile) else None


def retries_fewer_tiles(profile: str | None) -> bool:
    """Whether a sample that runs out of memory alone is retried with fewer tiles (not in the authors' setting)."""
    return not is_authors_setting(profile)


def oom_fallback(exc: BaseException) -> OomFallback:
    """The failed-sample error for an out-of-memory in the authors' setting (its text avoids 'out of memory', so
    the runner does not call it an OOM after the fewest tiles)."""
    return OomFallback(f"{OOM_FALLBACK_TAG}: {type(exc).__name__} at the profile's tiles; the authors' file "
                       "answers 'A' here (internvl_chat.py L403-405), not reproduced: a failed sample")


def count_oom_fallbacks(records) -> int:
    """How many sample records (dicts with ``failed`` / ``reason``) are would-be ``'A'`` fallbacks."""
    return sum(1 for r in records if r.get("failed") and OOM_FALLBACK_TAG in str(r.get("reason") or ""))


def result_extras(profile: str | None, records) -> dict:
    """Extra fields of the run record's ``results[dataset]``: the fallback count in the authors' setting, else none."""
    return {"oom_fallbacks": count_oom_fallbacks(records)} if is_authors_setting(profile) else {}


def dataset_record(model: str, tile_model: str, profile: str | None, dataset: str,
                   override: str | None = None) -> dict:
    """Extra fields of the run record's ``tiles[dataset]`` for the authors' setting (empty for other profiles, so their
    records are unchanged): prompt table, MMMU first-scale upscale, multi-image second scale."""
    if not is_authors_setting(profile):
        return {}
    from minimonkey_eval.eval.backends.prompts import match_rule, table_key

    setting = resolve_tiles(tile_model, dataset, profile, override)
    own_wrapper = get_model(model).msac_native   # InternVL2 + MSAC keeps InternVL2's prompts and MMMU upscale
    rule = match_rule(model, dataset, profile if own_wrapper else "vlmevalkit")
    return {"prompts": f"{table_key(model, profile if own_wrapper else 'vlmevalkit')}: {rule.source}",
            "upscale_first": bool(setting.upscale_first and own_wrapper),
            "multi_image_scale2": ("independent load_image(min_num2, max_num2)" if setting.kind == MSAC
                                   else "n/a (dynamic tiles)")}


def run_record(profile: str | None) -> dict | None:
    """The run record's ``wrapper``: the authors' file and the behaviours reproduced (or not), with its lines."""
    if not is_authors_setting(profile):
        return None
    prof = get_profile(MINIMONKEY, profile)
    return {"source": prof.source_file, "behaviours": dict(prof.notes)}


def oom_fallbacks_text(meta: dict) -> str:
    """The Runs sheet's cell: ``'3 (DocVQA_VAL 2, MMMU_DEV_VAL 1)'``, ``'0'``, or ``''`` when the run is not in the
    authors' setting (no count recorded)."""
    results = meta.get("results") if isinstance(meta, dict) else None
    counts = {d: r["oom_fallbacks"] for d, r in (results or {}).items()
              if isinstance(r, dict) and isinstance(r.get("oom_fallbacks"), int)}
    if not counts:
        return "0" if isinstance(meta, dict) and is_authors_setting(meta.get("tile_profile")) else ""
    total = sum(counts.values())
    parts = ", ".join(f"{d} {n}" for d, n in counts.items() if n)
    return f"{total} ({parts})" if parts else "0"
