"""torchrun data parallelism: VLMEvalKit's sample i to rank i % world_size, or whole image groups per rank.

``DistContext.from_env()`` reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (set by ``torchrun``); with a world
size above one it initialises ``torch.distributed`` (NCCL when the rank has a CUDA device, Gloo on CPU) and
picks ``cuda:LOCAL_RANK``. A plain ``python -m minimonkey_eval.cli`` is rank 0 of 1 and never touches
``torch.distributed``. Only rank 0 writes shared files (the run record, the merged predictions, score sheets); every
rank appends to its own prediction part file.

The runner shards by image group (:meth:`DistContext.shard_groups`, :func:`assign_ranks`): the questions about one
image stay on one rank (that rank computes the image once), groups are dealt largest first to the rank with the
fewest rows so far (ties: the lowest rank), so every rank computes the same assignment; with no groups (every row
its own) it is VLMEvalKit's ``i % world_size``. :func:`group_order` puts the rows of a group next to each other
(groups in order of their first row) so that they land in one pipeline window.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Sequence

logger = logging.getLogger(__name__)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        return default


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None        # None: single process, torch.distributed unused

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.backend is not None

    @classmethod
    def from_env(cls, device: str | None = None) -> "DistContext":
        """Rank/world from torchrun's environment; initialises the process group when world_size > 1.

        ``device``: the user's ``--device`` (None = auto). Returns the context; ``device_for`` gives the device.
        """
        world, local = _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)   # RANK: read by init_process_group
        if world <= 1:
            return cls(0, 1, 0, None)
        import torch
        import torch.distributed as dist

        use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=6))
        ctx = cls(dist.get_rank(), dist.get_world_size(), local, backend)
        logger.info("torch.distributed: rank %d/%d (local %d), backend %s", ctx.rank, ctx.world_size, local, backend)
        return ctx

    def device_for(self, device: str | None) -> str | None:
        """``cuda:LOCAL_RANK`` under torchrun with CUDA (unless the user gave an explicit ``cuda:N`` or ``cpu``)."""
        if not self.active:
            return device
        if self.backend == "nccl" and (device is None or device == "cuda"):
            return f"cuda:{self.local_rank}"
        return device if device is not None else "cpu"

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()

    def broadcast(self, obj):
        """``obj`` from rank 0 to every rank (returned on all ranks)."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """``obj`` of every rank, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def shard(self, n: int) -> list[int]:
        """Row positions this rank owns: ``range(rank, n, world_size)`` (VLMEvalKit's sheet_indices)."""
        return list(range(self.rank, n, self.world_size))

    def shard_groups(self, groups: Sequence) -> list[int]:
        """Row positions this rank owns, whole image groups per rank (``groups``: a key per row position, ``None``
        for a row alone; :func:`assign_ranks`), in position order."""
        if self.world_size <= 1:
            return list(range(len(groups)))
        ranks = assign_ranks(groups, self.world_size)
        return [p for p, r in enumerate(ranks) if r == self.rank]

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.backend = None

    def __enter__(self) -> "DistContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def env_rank() -> int:
        """This process's rank from torchrun's environment, before any process group exists (0 outside torchrun):
        the CLI uses it to let only rank 0 print an error every rank hits alike."""
        return _env_int("RANK", 0)


def _units(groups: Sequence) -> list[list[int]]:
    """Row positions per group (a ``None`` row alone), groups in order of their first row."""
    units: list[list[int]] = []
    by_key: dict = {}
    for pos, key in enumerate(groups):
        if key is None:
            units.append([pos])
        elif key in by_key:
            by_key[key].append(pos)
        else:
            by_key[key] = [pos]
            units.append(by_key[key])
    return units


def assign_ranks(groups: Sequence, world_size: int) -> list[int]:
    """The rank of every row position: each group whole on one rank, balanced by row count (largest groups first,
    each to the rank with the fewest rows so far, ties to the lowest rank; deterministic). Rows without a group
    (``None``) alone: all ``None`` gives ``i % world_size``."""
    units = _units(groups)
    units.sort(key=lambda u: (-len(u), u[0]))     # stable: equal sizes keep the order of their first row
    load = [0] * max(1, world_size)
    ranks = [0] * len(groups)
    for unit in units:
        rank = min(range(len(load)), key=lambda r: (load[r], r))
        load[rank] += len(unit)
        for pos in unit:
            ranks[pos] = rank
    return ranks


def group_order(positions: Sequence[int], groups: Sequence) -> list[int]:
    """``positions`` reordered so that the rows of one group follow each other, groups in order of their first
    position (stable inside a group; rows without a group stay where they are relative to the groups)."""
    keyed = [groups[p] for p in positions]
    return [positions[i] for unit in _units(keyed) for i in unit]
