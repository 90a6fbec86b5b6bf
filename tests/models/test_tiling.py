"""MSAC and dynamic tiling are bit-equal to VLMEvalKit's reference preprocessing over a sweep of sizes."""
from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from minimonkey_eval.models import dynamic_tiles, msac_tiles, msac_tiling
from minimonkey_eval.models.tiling import second_scale_grids

mm = pytest.importorskip("vlmeval.vlm.minimonkey")
ivl = pytest.importorskip("vlmeval.vlm.internvl.utils")

# (min, max, min2, max2) rows of VLMEvalKit's MiniMonkey table, plus edge settings.
SETTINGS = [(4, 12, 3, 7), (14, 23, 5, 15), (15, 23, 3, 5), (9, 24, 5, 8), (4, 11, 2, 6), (5, 11, 2, 6),
            (5, 12, 2, 6), (9, 24, 4, 8), (5, 12, 3, 7), (1, 24, 1, 8), (1, 1, 1, 1), (2, 2, 1, 1), (1, 6, 1, 3)]
EXTREME = [(1, 1), (1, 20000), (20000, 1), (2, 3), (3, 2), (448, 448), (896, 448), (447, 449), (1, 900), (900, 1),
           (5000, 16), (16, 5000), (2000, 2600)]


def _sizes(n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    sizes = list(EXTREME)
    while len(sizes) < n:
        ratio = 2 ** rng.uniform(-5, 5)
        area = 10 ** rng.uniform(2, 5.6)
        w = max(1, int((area * ratio) ** 0.5))
        h = max(1, int((area / ratio) ** 0.5))
        sizes.append((w, h))
    return sizes


def _image(size, seed) -> Image.Image:
    w, h = size
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (max(1, min(h, 24)), max(1, min(w, 24)), 3), generator=g, dtype=torch.uint8)
    return Image.fromarray(small.numpy()).resize((w, h), Image.NEAREST)


def _reference_msac(path, setting, size=448):
    mn, mx, mn2, mx2 = setting
    pv, ratio = mm.load_image(path, input_size=size, min_num=mn, max_num=mx)
    pv2 = mm.load_image2(path, input_size=size, target_aspect_ratio=ratio, min_num=mn2, max_num=mx2)
    return torch.cat((pv[:-1], pv2[:-1], pv[-1:]), 0)


def test_msac_bit_equal_sweep(tmp_path):
    """210 sizes x the wrapper's tile settings. Every 7th case at the real 448 px tile size; the rest at 112 px
    (the reference takes `input_size` too: same grid choice and cropping code, 16x fewer pixels, so the sweep
    stays fast on 2 cores)."""
    sizes = _sizes(210)
    for k, size in enumerate(sizes):
        path = tmp_path / f"img{k % 4}.png"
        _image(size, k).save(path)
        setting = SETTINGS[k % len(SETTINGS)]
        tile = 448 if k % 7 == 0 or size in EXTREME else 112
        ours = msac_tiles(Image.open(path), *setting, image_size=tile)
        ref = _reference_msac(str(path), setting, size=tile)
        assert ours.dtype == torch.float32 and ours.shape[1:] == (3, tile, tile)
        assert torch.equal(ours, ref), f"size {size} setting {setting} tile {tile}"


def test_msac_from_path_and_modes(tmp_path):
    # Path input and non-RGB modes (RGBA, P, L) go through convert('RGB') exactly like the reference.
    for mode in ("RGBA", "P", "L", "CMYK"):
        path = tmp_path / f"m.{'jpg' if mode == 'CMYK' else 'png'}"
        _image((700, 300), 3).convert(mode).save(path)
        assert torch.equal(msac_tiles(str(path), 4, 12, 3, 7), _reference_msac(str(path), (4, 12, 3, 7)))


def test_dynamic_bit_equal_sweep(tmp_path):
    for k, size in enumerate(_sizes(120, seed=1)):
        path = tmp_path / "d.png"
        _image(size, k).save(path)
        max_num = (6, 12, 18, 24)[k % 4]
        assert torch.equal(dynamic_tiles(Image.open(path), max_num=max_num),
                           ivl.load_image(str(path), max_num=max_num)), size


def test_msac_order_and_second_grid_rule():
    image = _image((1600, 900), 7)
    tiles = msac_tiling(image, 4, 12, 3, 7)
    g1, g2 = tiles.grid, tiles.grid2
    assert g1[0] % g2[0] != 0 or g1[1] % g2[1] != 0  # second grid does not divide the first
    n1, n2 = g1[0] * g1[1], g2[0] * g2[1]
    assert tiles.pixel_values.shape[0] == n1 + n2 + 1
    assert tiles.first_scale_tiles == n1
    # Last tile is the thumbnail: the whole image at 448x448.
    thumb = msac_tiles(image, 4, 12, 3, 7)[-1]
    assert torch.equal(thumb, dynamic_tiles(image.resize((448, 448)), max_num=1)[0])


def test_second_scale_fallback_is_one_tile_and_dropped():
    # With only (1,1) possible as second grid and it dividing every first grid, the fallback is (1,1): one tile
    # with no thumbnail, which the official [:-1] slicing drops.
    assert second_scale_grids(1, 1, (2, 2)) == []
    tiles = msac_tiling(_image((900, 900), 1), 4, 4, 1, 1)
    assert tiles.grid == (2, 2) and tiles.grid2 == (1, 1)
    assert tiles.pixel_values.shape[0] == 4 + 0 + 1


def test_bad_ranges():
    with pytest.raises(ValueError):
        msac_tiles(_image((10, 10), 0), 0, 12, 3, 7)
    with pytest.raises(ValueError):
        dynamic_tiles(_image((10, 10), 0), max_num=2, min_num=3)


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (height, width, 3), generator=g, dtype=torch.uint8).numpy())


@pytest.mark.parametrize("size", [(1000, 700), (300, 1200), (448, 448)])
def test_uint8_tiles_normalised_later_match_vlmeval(size, tmp_path):
    """normalize=False + normalize_pixels (the --normalize-on-device path, here on CPU) == VLMEvalKit's float32
    tiles (torchvision's ToTensor + Normalize in vlmeval's load_image / load_image2), MSAC and dynamic."""
    from minimonkey_eval.models.tiling import dynamic_tiling, normalize_pixels

    path = str(tmp_path / "photo.png")
    _photo(*size).save(path)
    raw = msac_tiling(path, 2, 6, 1, 4, normalize=False)
    assert raw.pixel_values.dtype == torch.uint8
    assert torch.equal(normalize_pixels(raw.pixel_values), _reference_msac(path, (2, 6, 1, 4)))
    raw = dynamic_tiling(path, max_num=4, normalize=False)
    assert torch.equal(normalize_pixels(raw.pixel_values), ivl.load_image(path, max_num=4))
