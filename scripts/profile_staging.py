#!/usr/bin/env python
"""Threads or worker processes for the pipeline's CPU staging? Times MSAC tiling (what dominates staging) of
DocVQA-sized pages (2000x2600 JPEG, tiles 14-23/5-15, 38 tiles each) serially, on a thread pool and on a process
pool of the same size (fork; each result pickled back to the parent, as a DataLoader worker's would be), float32
and uint8 (``--normalize-on-device``) tiles. Prints pages/s per way (best of ``--repeats``); the decision and the
numbers are in ``minimonkey_eval/models/pipeline.py``'s docstring.

    python scripts/profile_staging.py [--images 8] [--workers 2] [--repeats 2]
"""
from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from minimonkey_eval.datasets.workloads import make_image  # noqa: E402
from minimonkey_eval.models.tiling import msac_tiling  # noqa: E402


def _init() -> None:
    torch.set_num_threads(1)


def tile(path: str, normalize: bool = True):
    return msac_tiling(path, 14, 23, 5, 15, normalize=normalize)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    _init()
    with tempfile.TemporaryDirectory() as tmp:
        rng = random.Random(0)
        paths = []
        for i in range(args.images):
            path = f"{tmp}/page{i}.jpg"
            make_image("document", (2000, 2600), rng).save(path, quality=90)
            paths.append(path)
        threads = ThreadPoolExecutor(args.workers)
        procs = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("fork"), initializer=_init)
        list(procs.map(partial(tile, normalize=False), paths[:args.workers]))   # start the workers
        ways = {"serial": lambda f: [f(p) for p in paths],
                f"{args.workers} threads": lambda f: list(threads.map(f, paths)),
                f"{args.workers} processes": lambda f: list(procs.map(f, paths))}
        print(f"{args.images} pages 2000x2600, MSAC 14-23/5-15, torch threads 1 per worker")
        for normalize in (True, False):
            f = partial(tile, normalize=normalize)
            for name, way in ways.items():
                best = float("inf")
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    out = way(f)
                    best = min(best, time.perf_counter() - t0)
                tiles = sum(t.pixel_values.shape[0] for t in out)
                print(f"{'float32' if normalize else 'uint8':7s} {name:12s} {args.images / best:6.2f} pages/s "
                      f"({tiles / best:6.1f} tiles/s)", flush=True)
        threads.shutdown()
        procs.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
