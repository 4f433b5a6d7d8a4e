"""Run a function in N processes joined by a gloo process group (CPU DDP in tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp


def run_ranks(fn: Callable[..., None], world: int, folder: Path, *args) -> None:
    """Call ``fn(rank, world, *args)`` in ``world`` spawned processes; a failure in any
    rank fails the call. ``fn`` must be a module-level function (it is pickled)."""
    init = f"file://{folder / 'pg-init'}"
    mp.spawn(_entry, args=(fn, world, init, args), nprocs=world, join=True)


def _entry(rank: int, fn: Callable[..., None], world: int, init: str, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()
