"""Image tiling: Mini-Monkey's multi-scale adaptive cropping (MSAC) and InternVL2's dynamic tiling.

Pure functions, no model state. Pixel tensors are bit-equal to the official preprocessing
(`vlmeval.vlm.minimonkey.load_image` / `load_image2`, InternVL's `dynamic_preprocess`):

* grid choice: candidates (i, j) with min <= i*j <= max, sorted by i*j; the closest aspect ratio wins,
  a tie goes to the later candidate when the image area exceeds half the grid's area;
* the image is PIL-resized (Pillow's default bicubic) to (448*i, 448*j) and cut row-major into 448x448 tiles;
* a thumbnail (whole image resized to 448x448) is appended when the grid has more than one tile;
* each tile -> float32 CHW in [0, 1] (uint8 / 255), normalised with the ImageNet mean and std
  (or kept uint8, ``normalize=False``, for :func:`normalize_pixels` on the device).

MSAC order (VLMEvalKit wrapper and the Monkey eval code): ``s1[:-1] + s2[:-1] + s1[-1:]`` where s1 is the first
tiling (with its thumbnail) and s2 the second tiling, whose grid (i, j) must not divide the first grid
(``g1[0] % i or g1[1] % j``), also with its thumbnail. The official slicing is reproduced literally: a one-tile
second scale (no thumbnail) is dropped by ``[:-1]``, as in the original.

Unlike the reference, which decodes and resizes the full image once per scale, the image is converted once and
the thumbnail is computed once (it is the same image for both scales).

Two options reproduce the Monkey repo's eval wrapper (``project/mini_monkey/eval/internvl_chat.py`` ``generate_v2``):
``independent_scale2`` (its multi-image branch, L364-378: the second scale is ``load_image(min_num2, max_num2)``,
plain dynamic tiling, no grid excluded) and ``upscale`` (its MMMU_DEV_VAL rule, L369/L381: only the *first* scale
sees the image resized 2x bilinear, its grid, crops and thumbnail; the second scale reads the original image).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGE_SIZE = 448
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)


@dataclass(frozen=True)
class Tiles:
    """Tiles of one image: ``pixel_values`` [N, 3, 448, 448] and the bookkeeping SCM needs."""

    pixel_values: torch.Tensor
    grid: tuple[int, int]          # first-scale grid (columns, rows)
    first_scale_tiles: int         # number of leading tiles that belong to the first scale (SCM's "high" block)
    grid2: tuple[int, int] | None = None  # second-scale grid (MSAC only)


def candidate_grids(min_num: int, max_num: int) -> list[tuple[int, int]]:
    """All (i, j) with min_num <= i*j <= max_num, sorted by area (stable in the official set order)."""
    grids = set(
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    )
    # The official code sorts a *set* by area; among equal areas the order is the set's iteration order,
    # which for small int tuples is deterministic in CPython. Reproduce it by sorting the same set the same way.
    return sorted(grids, key=lambda g: g[0] * g[1])


def closest_grid(width: int, height: int, grids: list[tuple[int, int]],
                 image_size: int = IMAGE_SIZE) -> tuple[int, int]:
    """The official ``find_closest_aspect_ratio``: smallest |ar - i/j|; ties to the later grid if the image is big
    enough."""
    aspect_ratio = width / height
    best_diff = float("inf")
    best = (1, 1)
    area = width * height
    for grid in grids:
        diff = abs(aspect_ratio - grid[0] / grid[1])
        if diff < best_diff:
            best_diff, best = diff, grid
        elif diff == best_diff and area > 0.5 * image_size * image_size * grid[0] * grid[1]:
            best = grid
    return best


def second_scale_grids(min_num: int, max_num: int, first_grid: tuple[int, int]) -> list[tuple[int, int]]:
    """Candidates of the second scale: grids that do not divide the first grid in both directions."""
    return [g for g in candidate_grids(min_num, max_num) if first_grid[0] % g[0] != 0 or first_grid[1] % g[1] != 0]


def pixels_uint8(tile: Image.Image) -> torch.Tensor:
    """An RGB tile as uint8 CHW (what ToTensor reads), 1/4 of the float32 bytes."""
    array = np.asarray(tile, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float32 ToTensor + Normalize, bit-equal to torchvision's: / 255, then (x - mean) / std,
    true divisions on whichever device ``pixels`` is on. On CUDA the divisors are device tensors: a CPU-scalar divisor
    makes PyTorch's CUDA kernel multiply by its reciprocal, which can differ from division in the last bit."""
    x = pixels.to(torch.float32)
    if x.device.type == "cpu":
        return x.div(255).sub_(_MEAN).div_(_STD)
    scale, mean, std = _device_constants(x.device)
    return x.div(scale).sub_(mean).div_(std)


@functools.lru_cache(maxsize=None)
def _device_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """255, mean and std as tensors on ``device``, made once (not a host-to-device copy per vision chunk)."""
    return torch.tensor(255.0, device=device), _MEAN.to(device), _STD.to(device)


def to_tensor(tile: Image.Image) -> torch.Tensor:
    """ToTensor + Normalize, bit-equal to torchvision's (uint8 -> float32 / 255, then (x - mean) / std)."""
    return normalize_pixels(pixels_uint8(tile))


def _as_rgb(image: Image.Image | str) -> Image.Image:
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        with Image.open(image) as opened:
            return opened.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _thumbnail(image: Image.Image, image_size: int) -> Image.Image:
    return image.resize((image_size, image_size))


def _grid_crops(image: Image.Image, grid: tuple[int, int], image_size: int) -> list[Image.Image]:
    columns, rows = grid
    resized = image.resize((image_size * columns, image_size * rows))
    crops = []
    for k in range(columns * rows):
        x, y = (k % columns) * image_size, (k // columns) * image_size
        crops.append(resized.crop((x, y, x + image_size, y + image_size)))
    return crops


def _tensors(images: list[Image.Image], normalize: bool = True) -> torch.Tensor:
    """[N, 3, 448, 448]: float32 normalised, or (``normalize=False``) uint8 for :func:`normalize_pixels` later.

    The tiles are stacked as uint8 first and converted in one block (the same element-wise operations as
    :func:`to_tensor` per tile, so bit-equal; no per-tile float tensors and no second copy by ``torch.stack``)."""
    block = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))   # [N, H, W, 3]
    if not normalize:
        return block.permute(0, 3, 1, 2).contiguous()
    x = torch.empty((block.shape[0], 3, block.shape[1], block.shape[2]), dtype=torch.float32)
    x.copy_(block.permute(0, 3, 1, 2))
    return x.div_(255).sub_(_MEAN).div_(_STD)


def dynamic_tiles(image: Image.Image | str, max_num: int = 12, min_num: int = 1, image_size: int = IMAGE_SIZE,
                  use_thumbnail: bool = True) -> torch.Tensor:
    """InternVL2's dynamic tiling: [tiles..., thumbnail] as float32 [N, 3, 448, 448]."""
    return dynamic_tiling(image, max_num=max_num, min_num=min_num, image_size=image_size,
                          use_thumbnail=use_thumbnail).pixel_values


def dynamic_tiling(image: Image.Image | str, max_num: int = 12, min_num: int = 1, image_size: int = IMAGE_SIZE,
                   use_thumbnail: bool = True, normalize: bool = True) -> Tiles:
    """Like :func:`dynamic_tiles` but also returns the grid (``normalize=False``: uint8 tiles)."""
    _check_range(min_num, max_num)
    rgb = _as_rgb(image)
    grid = closest_grid(*rgb.size, candidate_grids(min_num, max_num), image_size)
    images = _grid_crops(rgb, grid, image_size)
    if use_thumbnail and len(images) != 1:
        images.append(_thumbnail(rgb, image_size))
    return Tiles(_tensors(images, normalize), grid=grid, first_scale_tiles=len(images))


def msac_tiles(image: Image.Image | str, min_num: int = 4, max_num: int = 12, min_num2: int = 3, max_num2: int = 7,
               image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """Mini-Monkey's MSAC tiles in the official order, float32 [N, 3, 448, 448]."""
    return msac_tiling(image, min_num, max_num, min_num2, max_num2, image_size).pixel_values


def msac_tiling(image: Image.Image | str, min_num: int = 4, max_num: int = 12, min_num2: int = 3, max_num2: int = 7,
                image_size: int = IMAGE_SIZE, normalize: bool = True, independent_scale2: bool = False,
                upscale: bool = False) -> Tiles:
    """Like :func:`msac_tiles` but also returns the grids and the size of the first-scale block (for SCM);
    ``normalize=False`` gives uint8 tiles (:func:`normalize_pixels` makes the float32 ones, on any device).
    ``independent_scale2``: the second grid is chosen among all ``min_num2..max_num2`` grids (the Monkey repo's
    multi-image branch); ``upscale``: the first scale tiles the image resized 2x bilinear (its MMMU rule)."""
    _check_range(min_num, max_num)
    _check_range(min_num2, max_num2)
    rgb = _as_rgb(image)
    width, height = rgb.size
    big = upscale_2x(rgb) if upscale else rgb
    grid1 = closest_grid(*big.size, candidate_grids(min_num, max_num), image_size)
    grids2 = (candidate_grids(min_num2, max_num2) if independent_scale2
              else second_scale_grids(min_num2, max_num2, grid1))
    grid2 = closest_grid(width, height, grids2, image_size)
    thumb = None
    scale1 = _grid_crops(big, grid1, image_size)
    if len(scale1) != 1:
        thumb = _thumbnail(big, image_size)
        scale1.append(thumb)
    scale2 = _grid_crops(rgb, grid2, image_size)
    if len(scale2) != 1:   # scale 2's own thumbnail (dropped by [:-1] below): the same image unless upscaled
        scale2.append(thumb if thumb is not None and not upscale else _thumbnail(rgb, image_size))
    ordered = scale1[:-1] + scale2[:-1] + scale1[-1:]
    # SCM's first-scale block size is grid1's area, as the official bookkeeping computes it.
    return Tiles(_tensors(ordered, normalize), grid=grid1, first_scale_tiles=grid1[0] * grid1[1], grid2=grid2)


def upscale_2x(image: Image.Image) -> Image.Image:
    """``image.resize((2w, 2h), BILINEAR)``, as InternVL's and the Monkey repo's ``load_image(upscale=True)``."""
    return image.resize((image.width * 2, image.height * 2), Image.BILINEAR)


def _check_range(lo: int, hi: int) -> None:
    if not (isinstance(lo, int) and isinstance(hi, int)) or lo < 1 or hi < lo or hi > 128:
        raise ValueError(f"invalid tile range {lo}-{hi}: need 1 <= min <= max <= 128")
