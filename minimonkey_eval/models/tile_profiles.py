"""Tile budgets per (model, dataset) as data: one table of rows per profile, one lookup function.

A profile is the per-dataset tile table of one official evaluation wrapper. Rows are tried in the order of the
official ``if/elif`` chain; a row matches when any of its patterns is a *substring* of the dataset name
(VLMEvalKit's ``listinstr``); the last row (no patterns) is the ``else`` branch and also answers ``dataset=None``.

Profiles (``source`` names the lines each row was read from):

* ``('minimonkey', 'vlmevalkit')``: VLMEvalKit ``vlmeval/vlm/minimonkey.py`` ``MiniMonkey.set_max_num``
  (ms-vlmeval 0.0.20, L275-330); greedy, ``max_new_tokens=512`` (``build_prompt`` L247).
  Its ChartQA_TEST branch (L283-285) sets only the maximums: the minimums are whatever the previous dataset of
  the same process left behind (an ``AttributeError`` if ChartQA_TEST runs first; 14/5 after DocVQA_VAL, which
  gives min > max, i.e. one 448x448 tile). We use the default-branch minimums (4 and 3): ChartQA = 4-12 / 3-3.
* ``('minimonkey', 'monkey-repo')``: the Monkey repo's drop-in ``project/mini_monkey/eval/internvl_chat.py``
  ``InternVLChat.set_max_num`` (L274-314; defaults min1=4, min2=1 at L275-276); ``max_new_tokens=1024`` (L246).
  Its ``generate_v2`` also tiles differently (carried by the resolved ``Tiling``): for a sample with several
  images the second scale is ``load_image(min_num2, max_num2)``, independent of the first grid (L373,
  ``independent_scale2``), and for ``MMMU_DEV_VAL`` the first image's first scale is upscaled 2x (L369, L381,
  ``upscale_first``).
* ``('internvl2', 'vlmevalkit')``: VLMEvalKit ``vlmeval/vlm/internvl/internvl_chat.py`` ``InternVLChat.set_max_num``
  (L316-337) with ``version='V2.0'``: single-scale dynamic tiling, ``min_num=1``, ``max_new_tokens=4096`` (L212).
  ``generate_v2`` (L386) caps the budget for multi-image samples: ``max(1, min(max_num, 64 // n_images))``.
  Not reproduced (no image dataset of ours needs them, and they need vlmeval's dataset metadata):
  video datasets (``max_num=1``) and GUI datasets (``max_num=12``).

This module is pure data + lookup; it must not import vlmeval.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from minimonkey_eval.models.registry import FAMILIES, get_model
from minimonkey_eval.models.settings import DYNAMIC, MSAC, Tiling, parse


@dataclass(frozen=True)
class TileRow:
    patterns: tuple[str, ...]   # substrings of the dataset name; () = the else branch (and dataset=None)
    setting: Tiling
    source: str                 # where the numbers were read
    max_new_tokens: int = 512   # the wrapper's generation budget for these datasets (a generation setting)


@dataclass(frozen=True)
class TileProfile:
    family: str
    name: str
    source_file: str
    rows: tuple[TileRow, ...]
    max_images_total: int | None = None   # InternVL2: max_num = max(1, min(max_num, total // n_images))
    multi_image_independent_scale2: bool = False   # n_images > 1: Tiling.independent_scale2
    upscale_first_for: str | None = None           # dataset substring -> Tiling.upscale_first
    notes: tuple[tuple[str, str], ...] = ()         # other behaviours of the wrapper: (name, what and where)


def _msac(patterns: tuple[str, ...], min1: int, max1: int, min2: int, max2: int, tokens: int, source: str) -> TileRow:
    return TileRow(patterns, Tiling.msac(min1, max1, min2, max2), source, tokens)


def _dyn(patterns: tuple[str, ...], max_num: int, source: str, tokens: int = 4096) -> TileRow:
    return TileRow(patterns, Tiling.dynamic(max_num), source, tokens)


_VK = 512     # VLMEvalKit MiniMonkey max_new_tokens
_MK = 1024    # Monkey repo eval max_new_tokens

PROFILES: dict[tuple[str, str], TileProfile] = {
    ("minimonkey", "vlmevalkit"): TileProfile(
        "minimonkey", "vlmevalkit", "vlmeval/vlm/minimonkey.py (ms-vlmeval 0.0.20)", (
            _msac(("ChartQA_TEST",), 4, 12, 3, 3, _VK, "L283-285 (mins unset; default-branch 4/3 used)"),
            _msac(("DocVQA_VAL", "DocVQA_TEST", "TextVQA_VAL"), 14, 23, 5, 15, _VK, "L286-290"),
            _msac(("InfoVQA_VAL", "InfoVQA_TEST", "SEEDBench_IMG"), 15, 23, 3, 5, _VK, "L291-295"),
            _msac(("OCRBench", "POPE"), 9, 24, 5, 8, _VK, "L296-300"),
            _msac(("HallusionBench",), 4, 11, 2, 6, _VK, "L301-305"),
            _msac(("MME",), 5, 11, 2, 6, _VK, "L306-310"),
            _msac(("AI2D_TEST",), 5, 12, 2, 6, _VK, "L311-315"),
            _msac(("CCBench",), 9, 24, 4, 8, _VK, "L316-320"),
            _msac(("MMMU_DEV_VAL",), 5, 12, 3, 7, _VK, "L321-325"),
            _msac((), 4, 12, 3, 7, _VK, "L276-281 (None), L326-330 (else)"),
        )),
    ("minimonkey", "monkey-repo"): TileProfile(
        "minimonkey", "monkey-repo", "Yuliang-Liu/Monkey project/mini_monkey/eval/internvl_chat.py", (
            _msac(("ChartQA_TEST",), 4, 12, 1, 3, _MK, "L275-279 (mins from the L275-276 defaults)"),
            _msac(("DocVQA_VAL", "DocVQA_TEST"), 1, 24, 1, 8, _MK, "L280-284"),
            _msac(("InfoVQA_VAL", "InfoVQA_TEST"), 5, 24, 3, 8, _MK, "L285-289"),
            _msac(("OCRBench",), 8, 24, 3, 9, _MK, "L290-294"),
            _msac(("CCBench",), 3, 8, 1, 4, _MK, "L295-299"),
            _msac(("RealWorldQA",), 3, 12, 1, 4, _MK, "L300-304"),
            _msac(("MME", "HallusionBench", "POPE"), 3, 9, 1, 4, _MK, "L305-309"),
            _msac((), 12, 24, 3, 5, _MK, "L310-314 (else, also dataset=None)"),
        ), multi_image_independent_scale2=True, upscale_first_for="MMMU_DEV_VAL", notes=(
            ("multi_image_scale2", "n_images > 1: second scale = load_image(min_num2, max_num2), not load_image2 "
                                   "with the first grid (generate_v2 L364-378)"),
            ("mmmu_upscale", "MMMU_DEV_VAL: first image resized 2x bilinear, first scale only (L369, L381; "
                             "load_image L84-87)"),
            ("dtype", "bfloat16 weights and pixels (L189-203, L372, L384)"),
            ("generation", "greedy: do_sample=False, num_beams=1, max_new_tokens=1024 (L246)"),
            ("scm", "off: chat() is called without use_scm (L394-401)"),
            ("oom_fallback", "torch.cuda.OutOfMemoryError -> answer 'A' (L403-405): not reproduced, such samples "
                             "are failed samples, counted as oom_fallbacks"),
        )),
    ("internvl2", "vlmevalkit"): TileProfile(
        "internvl2", "vlmevalkit", "vlmeval/vlm/internvl/internvl_chat.py (ms-vlmeval 0.0.20), version V2.0", (
            _dyn(("ChartQA_TEST", "MMMU_DEV_VAL", "MMMU_TEST", "MME-RealWorld", "VCR_EN", "VCR_ZH", "OCRVQA", "BMMR"),
                    12, "L322-323, L328-329"),
            _dyn(("DocVQA_VAL", "DocVQA_TEST", "DUDE", "MMLongBench_DOC", "SLIDEVQA"), 18, "L324, L330-331"),
            _dyn(("InfoVQA_VAL", "InfoVQA_TEST", "OCRBench", "HRBench4K", "HRBench8K"), 24, "L325, L332-333"),
            _dyn((), 6, "L319-321 (None), L336-337 (else)"),
        ), max_images_total=64),
}

def model_family(model: str) -> str:
    """A registered model name (``'MiniMonkey'``, ``'Mini-InternVL2-1B'``...) or a family name -> its tile/prompt
    family (``'minimonkey'`` | ``'internvl2'``), from the model registry."""
    if model in FAMILIES:
        return model
    return get_model(model).family


def get_profile(model: str, profile: str = "vlmevalkit") -> TileProfile:
    family = model_family(model)
    try:
        return PROFILES[(family, profile)]
    except KeyError:
        known = ", ".join(p for f, p in PROFILES if f == family)
        raise ValueError(f"unknown tile profile {profile!r} for {model!r}; known: {known}") from None


def match_row(profile: TileProfile, dataset: str | None) -> TileRow:
    """The first row whose pattern is a substring of ``dataset`` (``None`` only matches the else row)."""
    for row in profile.rows:
        if not row.patterns or (dataset is not None and any(p in dataset for p in row.patterns)):
            return row
    raise AssertionError(f"profile {profile.name!r} has no else row")  # every table ends with one


def resolve_tiles(model: str, dataset: str | None, profile: str = "vlmevalkit", override: str | None = None,
                  n_images: int = 1) -> Tiling:
    """The tiling of one sample of ``dataset`` with ``n_images`` images.

    ``override`` (``'12-24/3-5'`` or ``'1-12'``, read by ``settings.parse``) replaces the table's tiles (the kind
    follows the string); an MSAC override keeps the profile's multi-image and upscale rules. For profiles with an
    image budget (InternVL2) a dynamic setting's maximum is capped at ``max(1, min(max_num, 64 // n_images))`` as in
    the official ``generate_v2`` (the minimum is clamped to it); ``n_images <= 1`` leaves it unchanged (the official
    code divides by zero for text-only samples).
    """
    prof = get_profile(model, profile)
    setting = match_row(prof, dataset).setting
    if override is not None:
        setting = parse(override)
    if setting.kind == MSAC and (prof.multi_image_independent_scale2 or prof.upscale_first_for):
        setting = replace(setting, independent_scale2=prof.multi_image_independent_scale2 and n_images > 1,
                          upscale_first=bool(prof.upscale_first_for and dataset and prof.upscale_first_for in dataset))
    if prof.max_images_total and setting.kind == DYNAMIC and n_images > 1:
        max_num = max(1, min(setting.max_num, prof.max_images_total // n_images))
        setting = Tiling.dynamic(max_num=max_num, min_num=min(setting.min_num, max_num))
    return setting


def max_new_tokens_for(model: str, dataset: str | None, profile: str = "vlmevalkit") -> int:
    """The wrapper's ``max_new_tokens`` for ``dataset`` (a generation setting: ``--tiles`` overrides leave it)."""
    return match_row(get_profile(model, profile), dataset).max_new_tokens
