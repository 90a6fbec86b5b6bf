"""Tile tables: one test per row of each profile (numbers read from the official sources), override parsing, the
InternVL2 multi-image budget, and a cross-check against VLMEvalKit's own ``set_max_num`` where it is installed."""
from __future__ import annotations

import pytest

from minimonkey_eval.datasets.registry import DEFAULT_DATASETS
from minimonkey_eval.models.settings import Tiling, parse
from minimonkey_eval.models.tile_profiles import (
    PROFILES,
    get_profile,
    match_row,
    max_new_tokens_for,
    model_family,
    resolve_tiles,
)

# (datasets hitting the row, (min, max, min2, max2)); order = the official if/elif order.
VK_MINIMONKEY = [  # vlmeval/vlm/minimonkey.py L275-330
    (["ChartQA_TEST"], (4, 12, 3, 3)),  # L283-285: mins never set -> default-branch 4/3
    (["DocVQA_VAL", "DocVQA_TEST", "TextVQA_VAL"], (14, 23, 5, 15)),
    (["InfoVQA_VAL", "InfoVQA_TEST", "SEEDBench_IMG"], (15, 23, 3, 5)),
    (["OCRBench", "POPE"], (9, 24, 5, 8)),
    (["HallusionBench"], (4, 11, 2, 6)),
    (["MME"], (5, 11, 2, 6)),
    (["AI2D_TEST"], (5, 12, 2, 6)),
    (["CCBench"], (9, 24, 4, 8)),
    (["MMMU_DEV_VAL"], (5, 12, 3, 7)),
    ([None, "MathVista_MINI", "RealWorldQA", "MMBench_DEV_EN", "MMBench_DEV_CN"], (4, 12, 3, 7)),
]
MONKEY_REPO = [  # Monkey project/mini_monkey/eval/internvl_chat.py L274-314
    (["ChartQA_TEST"], (4, 12, 1, 3)),
    (["DocVQA_VAL", "DocVQA_TEST"], (1, 24, 1, 8)),
    (["InfoVQA_VAL", "InfoVQA_TEST"], (5, 24, 3, 8)),
    (["OCRBench"], (8, 24, 3, 9)),
    (["CCBench"], (3, 8, 1, 4)),
    (["RealWorldQA"], (3, 12, 1, 4)),
    (["MME", "HallusionBench", "POPE"], (3, 9, 1, 4)),
    ([None, "TextVQA_VAL", "SEEDBench_IMG", "AI2D_TEST", "MMMU_DEV_VAL", "MathVista_MINI", "MMBench_DEV_EN"],
     (12, 24, 3, 5)),
]
VK_INTERNVL2 = [  # vlmeval/vlm/internvl/internvl_chat.py L316-337
    (["ChartQA_TEST", "MMMU_DEV_VAL", "MMMU_TEST", "MME-RealWorld", "VCR_EN", "VCR_ZH", "OCRVQA", "BMMR"], 12),
    (["DocVQA_VAL", "DocVQA_TEST", "DUDE", "MMLongBench_DOC", "SLIDEVQA"], 18),
    (["InfoVQA_VAL", "InfoVQA_TEST", "OCRBench", "HRBench4K", "HRBench8K"], 24),
    ([None, "MME", "POPE", "HallusionBench", "AI2D_TEST", "TextVQA_VAL", "SEEDBench_IMG", "CCBench",
      "MathVista_MINI", "RealWorldQA", "MMBench_DEV_EN", "MMBench_DEV_CN"], 6),
]


def _ids(table):
    return [f"row{i}-{rows[0]}" for i, (rows, _) in enumerate(table)]


@pytest.mark.parametrize("row_index,datasets,expected", [(i, d, e) for i, (d, e) in enumerate(VK_MINIMONKEY)],
                         ids=_ids(VK_MINIMONKEY))
def test_minimonkey_vlmevalkit_row(row_index, datasets, expected):
    profile = PROFILES[("minimonkey", "vlmevalkit")]
    assert len(profile.rows) == len(VK_MINIMONKEY)
    for dataset in datasets:
        assert match_row(profile, dataset) is profile.rows[row_index]
        assert resolve_tiles("MiniMonkey", dataset) == Tiling("msac", *expected)
        assert max_new_tokens_for("MiniMonkey", dataset) == 512


@pytest.mark.parametrize("row_index,datasets,expected", [(i, d, e) for i, (d, e) in enumerate(MONKEY_REPO)],
                         ids=_ids(MONKEY_REPO))
def test_minimonkey_monkey_repo_row(row_index, datasets, expected):
    profile = PROFILES[("minimonkey", "monkey-repo")]
    assert len(profile.rows) == len(MONKEY_REPO)
    for dataset in datasets:
        assert match_row(profile, dataset) is profile.rows[row_index]
        got = resolve_tiles("MiniMonkey", dataset, profile="monkey-repo")
        # the wrapper's MMMU_DEV_VAL rule: first image upscaled at the first scale
        # (tests/eval/backends/test_monkey_repo.py)
        upscale = dataset is not None and "MMMU_DEV_VAL" in dataset
        assert got == Tiling("msac", *expected, upscale_first=upscale)
        assert max_new_tokens_for("MiniMonkey", dataset, "monkey-repo") == 1024


@pytest.mark.parametrize("row_index,datasets,expected", [(i, d, e) for i, (d, e) in enumerate(VK_INTERNVL2)],
                         ids=_ids(VK_INTERNVL2))
def test_internvl2_row(row_index, datasets, expected):
    profile = PROFILES[("internvl2", "vlmevalkit")]
    assert len(profile.rows) == len(VK_INTERNVL2)
    for dataset in datasets:
        assert match_row(profile, dataset) is profile.rows[row_index]
        for model in ("InternVL2-2B", "Mini-InternVL2-1B", "Mini-InternVL2-4B"):
            assert resolve_tiles(model, dataset) == Tiling("dynamic", 1, expected, None, None)
            assert max_new_tokens_for(model, dataset) == 4096


def test_chartqa_minimum_fallback():
    s = resolve_tiles("MiniMonkey", "ChartQA_TEST")
    default = resolve_tiles("MiniMonkey", None)
    assert (s.min_num, s.min_num2) == (default.min_num, default.min_num2) == (4, 3)
    assert (s.max_num, s.max_num2) == (12, 3)
    import minimonkey_eval.models.tile_profiles as tp
    assert "ChartQA_TEST" in tp.__doc__ and "default-branch minimums" in tp.__doc__
    assert "mins unset" in match_row(get_profile("MiniMonkey"), "ChartQA_TEST").source


def test_every_default_dataset_resolves():
    for dataset in DEFAULT_DATASETS:
        for model, profile in (("MiniMonkey", "vlmevalkit"), ("MiniMonkey", "monkey-repo"),
                               ("InternVL2-2B", "vlmevalkit")):
            s = resolve_tiles(model, dataset, profile)
            assert 1 <= s.min_num <= s.max_num
            if s.kind == "msac":
                assert 1 <= s.min_num2 <= s.max_num2


@pytest.mark.parametrize("text,expected", [
    ("12-24/3-5", Tiling("msac", 12, 24, 3, 5)),
    (" 4-12 / 3-7 ", Tiling("msac", 4, 12, 3, 7)),
    ("1-12", Tiling("dynamic", 1, 12, None, None)),
    ("6-6", Tiling("dynamic", 6, 6, None, None)),
])
def test_override_parsing(text, expected):
    assert resolve_tiles("MiniMonkey", "DocVQA_VAL", override=text) == expected


def test_override_keeps_profile_tokens():
    # max_new_tokens is a generation setting of the profile row: a tiles override leaves it
    assert max_new_tokens_for("InternVL2-2B", "MME") == 4096
    assert max_new_tokens_for("MiniMonkey", "MME", "monkey-repo") == 1024
    assert not hasattr(resolve_tiles("MiniMonkey", "MME", "monkey-repo", override="2-4/1-2"), "max_new_tokens")


@pytest.mark.parametrize("bad", ["", "12", "12-", "a-b", "12-24/3", "0-4", "8-4", "4-8/5-3", "1-2/3-4/5-6", "-1-3"])
def test_override_bad_strings(bad):
    with pytest.raises(ValueError) as err:
        parse(bad)
    assert "\n" not in str(err.value) and "bad tiles" in str(err.value)


def test_unknown_profile_and_model():
    with pytest.raises(ValueError, match="unknown tile profile"):
        resolve_tiles("InternVL2-2B", "MME", profile="monkey-repo")
    with pytest.raises(ValueError, match="unknown model"):
        resolve_tiles("Qwen2-VL", "MME")
    assert model_family("Mini-InternVL2-4B") == "internvl2"
    assert model_family("mini_monkey") == "minimonkey"


@pytest.mark.parametrize("dataset,n_images,expected", [
    ("MMMU_DEV_VAL", 1, 12), ("MMMU_DEV_VAL", 2, 12), ("MMMU_DEV_VAL", 5, 12), ("MMMU_DEV_VAL", 6, 10),
    ("MMMU_DEV_VAL", 7, 9), ("InfoVQA_VAL", 3, 21), ("InfoVQA_VAL", 2, 24), ("MME", 11, 5), ("MME", 64, 1),
    ("MME", 100, 1), ("MME", 0, 6),
])
def test_internvl2_n_images_rule(dataset, n_images, expected):
    s = resolve_tiles("InternVL2-2B", dataset, n_images=n_images)
    assert s.max_num == max(1, min(resolve_tiles("InternVL2-2B", dataset).max_num, 64 // max(n_images, 1)))
    assert s.max_num == expected and s.min_num == 1


def test_n_images_rule_applies_to_dynamic_overrides_only():
    assert resolve_tiles("InternVL2-2B", "MME", override="4-24", n_images=8).describe() == "4-8"
    assert resolve_tiles("InternVL2-2B", "MME", override="12-24", n_images=8).describe() == "8-8"
    # MSAC (MiniMonkey wrapper) has no multi-image budget
    assert resolve_tiles("MiniMonkey", "MMMU_DEV_VAL", n_images=7).describe() == "5-12/3-7"


def test_tile_profiles_does_not_import_vlmeval():
    import subprocess
    import sys

    code = "import sys, minimonkey_eval.models.tile_profiles; print('vlmeval' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- cross-check against the installed VLMEvalKit code ------------------------------------------------------------
EXTRA = ["MMMU_TEST", "MME-RealWorld", "DUDE", "HRBench8K", "OCRVQA", "DocVQA_TEST", "InfoVQA_TEST", None]


def test_matches_vlmeval_minimonkey_set_max_num():
    mm = pytest.importorskip("vlmeval.vlm.minimonkey")
    for dataset in list(DEFAULT_DATASETS) + EXTRA:
        obj = mm.MiniMonkey.__new__(mm.MiniMonkey)
        obj.min_num, obj.min_num2 = 4, 3   # what the ChartQA branch would inherit from a default-branch dataset
        obj.set_max_num(dataset)
        s = resolve_tiles("MiniMonkey", dataset)
        assert (s.min_num, s.max_num, s.min_num2, s.max_num2) == (obj.min_num, obj.max_num, obj.min_num2,
                                                                   obj.max_num2), dataset


def test_vlmeval_chartqa_branch_keeps_stale_minimums():
    mm = pytest.importorskip("vlmeval.vlm.minimonkey")
    obj = mm.MiniMonkey.__new__(mm.MiniMonkey)
    obj.set_max_num("ChartQA_TEST")
    assert not hasattr(obj, "min_num")          # first dataset of the process: load_image would raise
    obj.set_max_num("DocVQA_VAL")
    obj.set_max_num("ChartQA_TEST")
    assert (obj.min_num, obj.max_num, obj.min_num2, obj.max_num2) == (14, 12, 5, 3)   # min > max: one tile


def test_matches_vlmeval_internvl_set_max_num():
    ic = pytest.importorskip("vlmeval.vlm.internvl.internvl_chat")
    for dataset in list(DEFAULT_DATASETS) + EXTRA:
        obj = ic.InternVLChat.__new__(ic.InternVLChat)
        obj.set_max_num(dataset)
        for n in (1, 2, 3, 5, 6, 7, 11, 13, 22, 33, 64, 65):
            official = max(1, min(obj.max_num, 64 // n))   # generate_v2 L386 (total_max_num = 64, L318)
            assert resolve_tiles("InternVL2-2B", dataset, n_images=n).max_num == official, (dataset, n)
