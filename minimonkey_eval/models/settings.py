"""The engine's per-request settings as plain values: :class:`Tiling` (how images are tiled, with its one parser
:func:`parse`; its kinds ``MSAC`` / ``DYNAMIC``), :class:`ScmConfig` (SCM on, with its ratio; ``None`` = off) and the
default batch size (:func:`default_batch_size`). Pure data: no torch (at import), no vlmeval."""
from __future__ import annotations

import re
from dataclasses import dataclass

MSAC = "msac"         # Tiling.kind: Mini-Monkey's multi-scale tiles
DYNAMIC = "dynamic"   # Tiling.kind: InternVL2's one-scale dynamic tiles
MAX_TILES = 128   # cap on any --tiles maximum (documented in docs/python-api.md and docs/faults.md)
# The batch size when none is given: this many samples per batch on CUDA; on CPU one (a left-padded batch sends SDPA
# to its slow materialised-mask path there, and CPU matmuls already use every core at batch 1).
CUDA_BATCH_SIZE = 8
CPU_BATCH_SIZE = 1

_SYNTAX = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*(?:/\s*(\d+)\s*-\s*(\d+)\s*)?$")


@dataclass(frozen=True)
class Tiling:
    """How one sample's images are tiled: MSAC (Mini-Monkey, two scales) or InternVL2 dynamic (one scale, no
    second-scale numbers: ``None``). ``independent_scale2`` / ``upscale_first`` are the Monkey repo's multi-image
    and MMMU rules (MSAC only; see ``tile_profiles``)."""

    kind: str = MSAC
    min_num: int = 4               # first scale (msac) / the only scale (dynamic): min tiles
    max_num: int = 12              # ... max tiles
    min_num2: int | None = 3       # second scale (msac only)
    max_num2: int | None = 7
    independent_scale2: bool = False  # msac: 2nd grid chosen among all min_num2..max_num2 grids (Monkey multi-image)
    upscale_first: bool = False       # msac: the sample's first image tiled 2x-upscaled at the first scale only

    def __post_init__(self):
        if self.kind not in (MSAC, DYNAMIC):
            raise ValueError(f"unknown tiling kind {self.kind!r}; use 'msac' or 'dynamic'")
        if (self.kind == MSAC) != (self.min_num2 is not None and self.max_num2 is not None):
            raise ValueError("Tiling: min_num2/max_num2 are required for 'msac' and must be None for "
                             f"'dynamic': {self}")

    @classmethod
    def msac(cls, min_num: int = 4, max_num: int = 12, min_num2: int = 3, max_num2: int = 7) -> "Tiling":
        return cls(MSAC, min_num, max_num, min_num2, max_num2)

    @classmethod
    def dynamic(cls, max_num: int = 6, min_num: int = 1) -> "Tiling":
        return cls(DYNAMIC, min_num, max_num, None, None)

    def describe(self) -> str:
        """``'12-24/3-5'`` (msac) or ``'1-6'`` (dynamic): the syntax :func:`parse` reads."""
        first = f"{self.min_num}-{self.max_num}"
        return first if self.kind == DYNAMIC else f"{first}/{self.min_num2}-{self.max_num2}"


def is_tiles_text(text) -> bool:
    """Whether ``text`` has the ``MIN-MAX[/MIN2-MAX2]`` shape (its numbers are checked by :func:`parse`)."""
    return bool(_SYNTAX.match(str(text)))


def parse(text) -> Tiling:
    """``'12-24/3-5'`` -> MSAC (min-max / min2-max2); ``'1-12'`` -> dynamic. One-line ValueError otherwise
    (1 <= MIN <= MAX <= MAX_TILES on each scale)."""
    m = _SYNTAX.match(str(text))
    nums = [int(g) for g in m.groups() if g is not None] if m else []
    if not m or any(n < 1 for n in nums) or nums[0] > nums[1] or (len(nums) == 4 and nums[2] > nums[3]):
        raise ValueError(f"bad tiles {text!r}: expected 'MIN-MAX' (dynamic) or 'MIN-MAX/MIN2-MAX2' (msac), "
                         "1 <= MIN <= MAX")
    if max(nums) > MAX_TILES:
        raise ValueError(f"bad tiles {text!r}: every MAX must be <= {MAX_TILES} (the tile search grows with the "
                         "cube of the maximum; the official tables stop at 40)")
    if len(nums) == 2:
        return Tiling.dynamic(max_num=nums[1], min_num=nums[0])
    return Tiling.msac(*nums)


@dataclass(frozen=True)
class ScmConfig:
    """SCM switched on: keep ``int(high * ratio)`` first-scale tokens; ``fix_off_by_one`` keeps the token right
    after the block that the official code drops. ``None`` in place of a ScmConfig = SCM off."""

    ratio: float = 0.5
    fix_off_by_one: bool = False

    def __post_init__(self):
        if not 0.0 < float(self.ratio) <= 1.0:
            raise ValueError(f"SCM ratio must be in (0, 1], got {self.ratio!r}")


def scm_config(on: bool, ratio: float = 0.5, fix_off_by_one: bool = False) -> ScmConfig | None:
    """The options' ``--scm`` / ``--scm-ratio`` / ``--scm-fix-off-by-one`` as one value (``None`` when off)."""
    return ScmConfig(ratio, fix_off_by_one) if on else None


def default_batch_size(device=None) -> int:
    """``CUDA_BATCH_SIZE`` on a CUDA device, ``CPU_BATCH_SIZE`` elsewhere (``device`` None: CUDA if torch sees one)."""
    if device is None:
        import torch

        return CUDA_BATCH_SIZE if torch.cuda.is_available() else CPU_BATCH_SIZE
    return CUDA_BATCH_SIZE if str(device).startswith("cuda") else CPU_BATCH_SIZE
