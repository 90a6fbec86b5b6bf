"""Tiling rules on cases with known answers: the official grid choice (ties, single-area ranges such as
``--tiles 4-4``), the second scale's exclusion rule, MSAC's order and block size, the Monkey repo's two options, and
the range check; checked against VLMEvalKit's own functions where it has them, at tiny tile sizes (fast)."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from minimonkey_eval.models import tiling as t

mm = pytest.importorskip("vlmeval.vlm.minimonkey")


def official_grids(lo: int, hi: int) -> list[tuple[int, int]]:
    """VLMEvalKit's target ratios: the set, sorted by area."""
    ratios = set((i, j) for n in range(lo, hi + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                 if lo <= i * j <= hi)
    return sorted(ratios, key=lambda x: x[0] * x[1])


def picture(w: int, h: int, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (min(h, 6), min(w, 6), 3), generator=g, dtype=torch.uint8)
    return Image.fromarray(small.numpy()).resize((w, h), Image.NEAREST)


@pytest.mark.parametrize("lo, hi", [(4, 4), (1, 1), (6, 6), (12, 12), (1, 12), (3, 7), (14, 23), (7, 8)])
def test_candidate_grids_are_the_official_ones_in_order(lo, hi):
    assert t.candidate_grids(lo, hi) == official_grids(lo, hi)


def test_single_area_range_lists_every_factorisation():
    assert sorted(t.candidate_grids(4, 4)) == [(1, 4), (2, 2), (4, 1)]
    assert sorted(t.candidate_grids(6, 6)) == [(1, 6), (2, 3), (3, 2), (6, 1)]
    assert t.candidate_grids(1, 1) == [(1, 1)]


@pytest.mark.parametrize("size", [(448, 448), (700, 700), (3, 2), (3000, 2000), (896, 448), (1792, 896),
                                  (1, 5000), (5000, 1), (1000, 333), (640, 480), (480, 640), (1267, 1267)])
@pytest.mark.parametrize("lo, hi", [(4, 4), (1, 12), (3, 7), (1, 1), (2, 6)])
def test_closest_grid_is_the_official_choice(size, lo, hi):
    w, h = size
    grids = official_grids(lo, hi)
    assert t.closest_grid(w, h, grids) == mm.find_closest_aspect_ratio(w / h, grids, w, h, 448)


def test_tie_rules():
    """Equal aspect differences: the later (larger) grid wins only when the image area exceeds half its area."""
    assert t.closest_grid(448, 448, [(1, 1), (2, 2)]) == (1, 1)        # 200704 <= 0.5 * 448^2 * 4
    assert t.closest_grid(700, 700, [(1, 1), (2, 2)]) == (2, 2)        # 490000 > 401408
    assert t.closest_grid(3, 2, [(1, 1), (2, 1)]) == (1, 1)            # 1.5: equally far from 1 and 2, small
    assert t.closest_grid(3000, 2000, [(1, 1), (2, 1)]) == (2, 1)      # big: the later one
    assert t.closest_grid(3000, 2000, [(2, 1), (1, 1)]) == (1, 1)      # "later" is the list's order
    assert t.closest_grid(100, 100, [(2, 1), (1, 2)]) == (1, 2)        # |1 - 2| = 1 > |1 - 0.5|: the closer one
    assert t.closest_grid(30, 10, [(1, 1), (2, 1)], image_size=4) == (2, 1)     # area 300 > 0.5 * 16 * 2
    assert t.closest_grid(3, 2, [(1, 1), (2, 1)], image_size=4) == (1, 1)       # area 6 <= 0.5 * 16 * 2
    assert t.closest_grid(10, 10, []) == (1, 1)


def test_second_scale_excludes_grids_that_divide_the_first():
    assert t.second_scale_grids(3, 7, (2, 2)) == [g for g in official_grids(3, 7) if g != (2, 2)]
    assert (1, 3) not in t.second_scale_grids(3, 7, (2, 3)) and (2, 3) not in t.second_scale_grids(3, 7, (2, 3))
    assert (3, 1) in t.second_scale_grids(3, 7, (2, 3)) and (1, 4) in t.second_scale_grids(3, 7, (2, 3))
    assert t.second_scale_grids(1, 1, (3, 5)) == []
    assert t.second_scale_grids(2, 2, (3, 5)) == [(1, 2), (2, 1)]


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (64, 64), (500, 90), (33, 400), (5, 5)])
@pytest.mark.parametrize("setting", [(4, 12, 3, 7), (4, 4, 2, 2), (1, 6, 1, 3), (1, 1, 1, 1), (2, 2, 1, 1)])
def test_msac_equals_vlmevalkit_at_a_small_tile_size(tmp_path, size, setting):
    path = tmp_path / "i.png"
    picture(*size).save(path)
    mn, mx, mn2, mx2 = setting
    pv, ratio = mm.load_image(str(path), input_size=16, min_num=mn, max_num=mx)
    pv2 = mm.load_image2(str(path), input_size=16, target_aspect_ratio=ratio, min_num=mn2, max_num=mx2)
    tiles = t.msac_tiling(str(path), *setting, image_size=16)
    assert torch.equal(tiles.pixel_values, torch.cat((pv[:-1], pv2[:-1], pv[-1:]), 0))
    assert tiles.grid == tuple(ratio) and tiles.first_scale_tiles == ratio[0] * ratio[1]
    assert torch.equal(t.msac_tiles(Image.open(path), *setting, image_size=16), tiles.pixel_values)
    uint8 = t.msac_tiling(Image.open(path), *setting, image_size=16, normalize=False)
    assert uint8.pixel_values.dtype == torch.uint8 and torch.equal(t.normalize_pixels(uint8.pixel_values),
                                                                   tiles.pixel_values)


@pytest.mark.parametrize("size", [(300, 200), (64, 64), (5, 90)])
@pytest.mark.parametrize("lo, hi", [(1, 6), (4, 4), (1, 1)])
def test_dynamic_equals_vlmevalkit_at_a_small_tile_size(tmp_path, size, lo, hi):
    image = picture(*size)
    ref = mm.dynamic_preprocess(image, min_num=lo, max_num=hi, image_size=16, use_thumbnail=True)
    ref = ref[0] if isinstance(ref, tuple) else ref
    tiles = t.dynamic_tiling(image, max_num=hi, min_num=lo, image_size=16)
    assert torch.equal(tiles.pixel_values, torch.stack([t.to_tensor(im) for im in ref]))
    assert tiles.first_scale_tiles == len(ref)
    no_thumb = t.dynamic_tiles(image, max_num=hi, min_num=lo, image_size=16, use_thumbnail=False)
    assert len(no_thumb) == tiles.grid[0] * tiles.grid[1]


def test_msac_order_block_size_and_grids():
    image = picture(300, 100)                   # aspect 3
    tiles = t.msac_tiling(image, 4, 12, 3, 7, image_size=8)
    g1, g2 = tiles.grid, tiles.grid2
    n1, n2 = g1[0] * g1[1], g2[0] * g2[1]
    assert g1 == (6, 2) and g2 == (3, 1) or (g1[0] % g2[0] or g1[1] % g2[1])
    assert len(tiles.pixel_values) == n1 + n2 + 1 and tiles.first_scale_tiles == n1
    thumb = t.to_tensor(image.resize((8, 8)))
    assert torch.equal(tiles.pixel_values[-1], thumb)
    first = t.to_tensor(image.resize((8 * g1[0], 8 * g1[1])).crop((0, 0, 8, 8)))
    second = t.to_tensor(image.resize((8 * g2[0], 8 * g2[1])).crop((0, 0, 8, 8)))
    assert torch.equal(tiles.pixel_values[0], first) and torch.equal(tiles.pixel_values[n1], second)
    last_first = t.to_tensor(image.resize((8 * g1[0], 8 * g1[1])).crop((8 * (g1[0] - 1), 8 * (g1[1] - 1),
                                                                        8 * g1[0], 8 * g1[1])))
    assert torch.equal(tiles.pixel_values[n1 - 1], last_first)


def test_one_tile_second_scale_is_dropped_as_officially():
    tiles = t.msac_tiling(picture(50, 50), 4, 4, 1, 1, image_size=8)
    assert tiles.grid2 == (1, 1) and len(tiles.pixel_values) == tiles.first_scale_tiles + 1


def test_one_tile_first_scale_has_no_thumbnail():
    tiles = t.msac_tiling(picture(50, 50), 1, 1, 2, 2, image_size=8)
    assert tiles.grid == (1, 1) and tiles.first_scale_tiles == 1
    assert tiles.grid2 in ((1, 2), (2, 1))
    assert len(tiles.pixel_values) == 2 + 1          # scale 1 has no thumbnail: [] + scale 2's 2 tiles + the 1 tile
    single = t.dynamic_tiling(picture(50, 50), max_num=1, image_size=8)
    assert len(single.pixel_values) == 1 and single.first_scale_tiles == 1


def test_independent_second_scale_may_repeat_the_first_grid():
    image = picture(64, 64)
    default = t.msac_tiling(image, 4, 4, 4, 4, image_size=8)
    independent = t.msac_tiling(image, 4, 4, 4, 4, image_size=8, independent_scale2=True)
    assert default.grid == independent.grid == (2, 2)
    assert default.grid2 != (2, 2) and independent.grid2 == (2, 2)


def test_upscale_tiles_the_first_scale_from_the_2x_bilinear_image():
    image = picture(40, 20, seed=3)
    tiles = t.msac_tiling(image, 1, 6, 1, 3, image_size=8, upscale=True)
    big = image.resize((80, 40), Image.BILINEAR)
    g1, g2 = tiles.grid, tiles.grid2
    n1 = g1[0] * g1[1]
    assert g1 == t.closest_grid(80, 40, t.candidate_grids(1, 6), 8)
    assert torch.equal(tiles.pixel_values[0], t.to_tensor(big.resize((8 * g1[0], 8 * g1[1])).crop((0, 0, 8, 8))))
    assert torch.equal(tiles.pixel_values[-1], t.to_tensor(big.resize((8, 8))))
    assert torch.equal(tiles.pixel_values[n1], t.to_tensor(image.resize((8 * g2[0], 8 * g2[1])).crop((0, 0, 8, 8))))
    assert t.upscale_2x(image).size == (80, 40)


def test_modes_and_paths_are_converted_to_rgb(tmp_path):
    rgba = picture(30, 20).convert("RGBA")
    path = tmp_path / "a.png"
    rgba.save(path)
    expected = t.dynamic_tiling(rgba.convert("RGB"), max_num=2, image_size=8).pixel_values
    assert torch.equal(t.dynamic_tiling(rgba, max_num=2, image_size=8).pixel_values, expected)
    assert torch.equal(t.dynamic_tiling(path, max_num=2, image_size=8).pixel_values, expected)
    assert torch.equal(t.dynamic_tiling(str(path), max_num=2, image_size=8).pixel_values, expected)


def test_pixels_are_torchvision_normalised():
    tile = picture(8, 8)
    x = torch.from_numpy(__import__("numpy").asarray(tile).copy()).permute(2, 0, 1).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.equal(t.to_tensor(tile), (x - mean) / std)
    assert t.pixels_uint8(tile).shape == (3, 8, 8) and t.pixels_uint8(tile).dtype == torch.uint8


@pytest.mark.parametrize("lo, hi", [(0, 1), (2, 1), (1, 129), (-1, 4), (1.0, 4), ("1", 4), (1, None)])
def test_bad_ranges_are_refused(lo, hi):
    with pytest.raises(ValueError, match=f"invalid tile range {lo}-{hi}: need 1 <= min <= max <= 128"):
        t.dynamic_tiling(picture(8, 8), min_num=lo, max_num=hi, image_size=8)


@pytest.mark.parametrize("lo, hi", [(1, 128), (4, 4), (128, 128), (1, 1)])
def test_edge_ranges_pass_the_check(lo, hi):
    tiles = t.dynamic_tiling(picture(4, 4), min_num=lo, max_num=hi, image_size=1)
    assert lo <= tiles.grid[0] * tiles.grid[1] <= hi
    assert t.msac_tiling(picture(4, 4), 1, 2, lo, hi, image_size=1).grid2 is not None


def test_tie_threshold_uses_the_grid_area():
    assert t.closest_grid(1000, 500, [(2, 1), (4, 2)]) == (2, 1)      # 500000 <= 0.5 * 448^2 * 8
    assert t.closest_grid(1300, 650, [(2, 1), (4, 2)]) == (4, 2)      # 845000 > 802816


def test_second_scale_tie_uses_the_tile_size():
    """Aspect 1.5: (2, 1) and (2, 2) are equally close; at 8 px tiles the 300x200 image is big enough for the later."""
    tiles = t.msac_tiling(picture(300, 200), 6, 6, 2, 4, image_size=8)
    assert tiles.grid == (3, 2) and tiles.grid2 == (2, 2)


def test_dynamic_tiles_add_the_thumbnail_by_default():
    tiles = t.dynamic_tiling(picture(300, 200), max_num=6, image_size=8)
    assert len(t.dynamic_tiles(picture(300, 200), max_num=6, image_size=8)) == tiles.grid[0] * tiles.grid[1] + 1


def test_defaults_are_the_official_ranges():
    """MSAC 4-12 / 3-7 and dynamic 1-12 (VLMEvalKit's MiniMonkey and InternVL2 defaults): aspect ratios from 1/14
    to 14 reach the ends of every range."""
    for w, h in [(k, 1) for k in range(1, 15)] + [(1, k) for k in range(2, 15)] + [(3, 2), (2, 3), (5, 2)]:
        image = picture(8 * w, 8 * h)
        default = t.msac_tiling(image, image_size=8)
        explicit = t.msac_tiling(image, 4, 12, 3, 7, image_size=8)
        assert (default.grid, default.grid2) == (explicit.grid, explicit.grid2), (w, h)
        assert torch.equal(t.msac_tiles(image, image_size=8), explicit.pixel_values)
        assert t.dynamic_tiling(image, image_size=8).grid == t.dynamic_tiling(image, 12, 1, image_size=8).grid
        assert len(t.dynamic_tiles(image, image_size=8)) == len(t.dynamic_tiles(image, 12, 1, image_size=8))
