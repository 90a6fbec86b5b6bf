#!/usr/bin/env python
"""CPU preprocessing benchmark: our MSAC (``tiling.msac_tiles``) vs VLMEvalKit's ``load_image`` + ``load_image2``.

On a DocVQA-like page (2000x2600 JPEG, tiles 14-23 / 5-15) and an OCRBench-like crop (600x150 JPEG, 9-24 / 5-8),
both from the same file: asserts the tensors are bit-equal, then times interleaved repeats and prints tiles/s
(median and best). Torch runs with ``--threads`` intra-op threads (default 1, as in a DataLoader worker).

Also times a *prototype* (here only, not in tiling.py) of a vectorised tensor conversion, to show what changing
``tiling._tensors`` would gain: stack the uint8 tiles (views into one array per scale), then convert and
normalise the whole [N, 3, 448, 448] block in place, in the same order of operations (so bit-equal), and a
per-stage breakdown of ``msac_tiles``.

    python scripts/bench_preprocess.py [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import random
import warnings
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# torch.from_numpy on PIL's read-only buffers: the prototype only reads them.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from minimonkey_eval.bench import make_image  # noqa: E402
from minimonkey_eval.models import tiling as T  # noqa: E402

CASES = (  # name, image kind, size, (min, max, min2, max2)
    ("DocVQA-like 2000x2600", "document", (2000, 2600), (14, 23, 5, 15)),
    ("OCRBench-like 600x150", "crop", (600, 150), (9, 24, 5, 8)),
)


def reference(path, min_num, max_num, min_num2, max_num2):
    """vlmeval/vlm/minimonkey.py generate_v2 (single image), without the .cuda().to(bf16)."""
    from vlmeval.vlm.minimonkey import load_image, load_image2

    pixel_values, target_aspect_ratio = load_image(path, min_num=min_num, max_num=max_num)
    pixel_values2 = load_image2(path, target_aspect_ratio=target_aspect_ratio, min_num=min_num2, max_num=max_num2)
    return torch.cat((pixel_values[:-1], pixel_values2[:-1], pixel_values[-1:]), 0)


def ours(path, min_num, max_num, min_num2, max_num2):
    return T.msac_tiles(path, min_num, max_num, min_num2, max_num2)


# ---- prototype of a faster tensor conversion (same arithmetic, fewer and larger ops) ----------------------------
def _grid_u8(image: Image.Image, grid, size=T.IMAGE_SIZE) -> list[torch.Tensor]:
    columns, rows = grid
    array = torch.from_numpy(np.asarray(image.resize((size * columns, size * rows)), dtype=np.uint8))
    blocks = array.view(rows, size, columns, size, 3).permute(0, 2, 4, 1, 3)   # [r, c, 3, 448, 448] views
    return [blocks[k // columns, k % columns] for k in range(columns * rows)]  # row-major, as _grid_crops


def _normalise_u8(tiles: list[torch.Tensor]) -> torch.Tensor:
    out = torch.stack(tiles).to(torch.float32)          # one uint8 stack, one conversion
    return out.div_(255).sub_(T._MEAN).div_(T._STD)     # ToTensor's /255 then Normalize, in place, same order


def prototype(path, min_num, max_num, min_num2, max_num2):
    rgb = T._as_rgb(path)
    width, height = rgb.size
    grid1 = T.closest_grid(width, height, T.candidate_grids(min_num, max_num))
    grid2 = T.closest_grid(width, height, T.second_scale_grids(min_num2, max_num2, grid1))
    thumb = None
    scale1 = _grid_u8(rgb, grid1)
    if len(scale1) != 1:
        thumb = torch.from_numpy(np.asarray(rgb.resize((T.IMAGE_SIZE, T.IMAGE_SIZE)), dtype=np.uint8)).permute(2, 0, 1)
        scale1.append(thumb)
    scale2 = _grid_u8(rgb, grid2)
    if len(scale2) != 1:
        scale2.append(thumb if thumb is not None else
                      torch.from_numpy(np.asarray(rgb.resize((T.IMAGE_SIZE, T.IMAGE_SIZE)))).permute(2, 0, 1))
    return _normalise_u8(scale1[:-1] + scale2[:-1] + scale1[-1:])


# ---- breakdown --------------------------------------------------------------------------------------------------
def breakdown(path, min_num, max_num, min_num2, max_num2) -> dict[str, float]:
    """Seconds per stage of msac_tiling's steps (decode, choose grids, resizes + crops, tensor conversion), and the
    prototype's conversion of the same crops."""
    t0 = time.perf_counter()
    rgb = T._as_rgb(path)
    t1 = time.perf_counter()
    width, height = rgb.size
    grid1 = T.closest_grid(width, height, T.candidate_grids(min_num, max_num))
    grid2 = T.closest_grid(width, height, T.second_scale_grids(min_num2, max_num2, grid1))
    t2 = time.perf_counter()
    scale1 = T._grid_crops(rgb, grid1, T.IMAGE_SIZE)
    scale2 = T._grid_crops(rgb, grid2, T.IMAGE_SIZE)
    thumb = T._thumbnail(rgb, T.IMAGE_SIZE)
    t3 = time.perf_counter()
    crops = scale1 + scale2 + [thumb]
    T._tensors(crops)
    t4 = time.perf_counter()
    _normalise_u8([torch.from_numpy(np.asarray(c, dtype=np.uint8)).permute(2, 0, 1) for c in crops])
    t5 = time.perf_counter()
    return {"decode": t1 - t0, "grids": t2 - t1, "resize+crop": t3 - t2, "_tensors": t4 - t3,
            "prototype _normalise_u8": t5 - t4}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (DataLoader workers use 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    fns = (("ours (msac_tiles)", ours), ("reference (vlmeval)", reference), ("prototype (vectorised)", prototype))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mm-pp-") as tmp:
        for name, kind, size, tiles in CASES:
            path = str(Path(tmp) / f"{kind}.jpg")
            make_image(kind, size, random.Random(name)).save(path, format="JPEG", quality=90)
            outputs = {label: fn(path, *tiles) for label, fn in fns}   # also the warm-up (vlmeval import, caches)
            base = outputs["reference (vlmeval)"]
            for label, out in outputs.items():
                assert out.dtype == base.dtype and out.shape == base.shape and torch.equal(out, base), \
                    f"{name}: {label} differs from the reference"
            n_tiles = base.shape[0]
            times = {label: [] for label, _ in fns}
            for _ in range(args.repeats):                                    # interleaved: same machine load
                for label, fn in fns:
                    t0 = time.perf_counter()
                    fn(path, *tiles)
                    times[label].append(time.perf_counter() - t0)
            stages = [breakdown(path, *tiles) for _ in range(3)]
            stage = {k: min(s[k] for s in stages) for k in stages[0]}
            ref_median = statistics.median(times["reference (vlmeval)"])
            for label, _ in fns:
                med, best = statistics.median(times[label]), min(times[label])
                rows.append((name, f"{'-'.join(map(str, tiles[:2]))}/{'-'.join(map(str, tiles[2:]))}", n_tiles,
                             label, med * 1e3, best * 1e3, n_tiles / med, n_tiles / best, ref_median / med))
            print(f"{name}: msac_tiles stages (best of 3, ms): "
                  + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in stage.items()))
    header = ("image", "tiles s1/s2", "N", "implementation", "median ms", "best ms", "tiles/s (median)",
              "tiles/s (best)", "vs reference", "bit-equal")
    cells = [header] + [(r[0], r[1], str(r[2]), r[3], f"{r[4]:.1f}", f"{r[5]:.1f}", f"{r[6]:.1f}", f"{r[7]:.1f}",
                         f"{r[8]:.2f}x", "yes") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    print(f"\ntorch threads {torch.get_num_threads()}, {args.repeats} interleaved repeats")
    for k, c in enumerate(cells):
        print(" | ".join(v.rjust(w) if j >= 2 else v.ljust(w) for j, (v, w) in enumerate(zip(c, widths))))
        if k == 0:
            print("-+-".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
