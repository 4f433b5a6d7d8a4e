"""Filling the embedding cache from several processes (DDP ranks) at once.

Each rank encodes a disjoint share of the cells that some rank's store lacks, so every
distinct cell runs through the encoder once in the whole job. Features then travel
over the process group (``all_gather_object``) and one writer per node — local rank 0 —
stores them, so ranks of a node share one SQLite store (atomic transactions, WAL
readers) and nodes need no shared file system: each node's store ends up complete.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from crossfuse.cache.precompute import BatchRunner, PrecomputeResult, cell_keys, frozen_on
from crossfuse.cache.store import CachedItem, EmbeddingStore
from crossfuse.data.processor import ColumnProcessor
from crossfuse.errors import CellError, ConfigError


@dataclass
class RankGroup:
    """This process's place in the job, and the collectives the cache needs."""

    rank: int  # global rank
    world: int  # number of processes
    writer: bool  # this rank writes its node's store (local rank 0)

    @classmethod
    def current(cls, local_rank: int) -> RankGroup | None:
        """The running process group, or None outside one (or with a single process)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        return cls(dist.get_rank(), dist.get_world_size(), writer=local_rank == 0)

    def all_gather(self, obj: Any) -> list[Any]:
        """``obj`` from every rank, in rank order."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier()


def precompute_sharded(
    encoder: nn.Module,
    processor: ColumnProcessor,
    cells: Sequence[Any],
    *,
    modality: str,
    base_dir: Path | None,
    store: EmbeddingStore,
    namespace: str,
    group: RankGroup,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> PrecomputeResult:
    """:func:`~crossfuse.cache.precompute` run by every rank of ``group`` together.

    Every rank must call it with the same ``cells``. On return every rank's store holds
    the features of every usable cell, and every rank gets the same result; ``encoded``
    counts the cells encoded by the whole job.
    """
    if batch_size < 1:
        raise ConfigError(f"cache batch_size must be at least 1, got {batch_size}")
    keys, first = cell_keys(cells, modality=modality, base_dir=base_dir)
    have = store.contains(namespace, first)
    lacking = set().union(*group.all_gather([k for k in first if k not in have]))
    todo = [(key, row) for key, row in first.items() if key in lacking]  # same on every rank
    mine = todo[group.rank :: group.world]
    rounds = math.ceil(math.ceil(len(todo) / group.world) / batch_size)  # same on every rank
    failed: set[str] = set()
    runner = BatchRunner(encoder, processor, store, namespace, False, device)
    with frozen_on(encoder, torch.device(device)):
        for step in range(rounds):
            lost: set[str] = set()
            buffer = []
            for key, row in mine[step * batch_size : (step + 1) * batch_size]:
                try:
                    buffer.append((key, processor.process(cells[row], base_dir=base_dir)))
                except CellError:
                    lost.add(key)
            items = runner.encode(buffer, lost) if buffer else {}
            shares: list[tuple[dict[str, CachedItem], set[str]]] = group.all_gather((items, lost))
            if group.writer:
                store.put_many(namespace, {k: v for part, _ in shares for k, v in part.items()})
            for _, part_lost in shares:
                failed |= part_lost
            if progress is not None:
                progress(min((step + 1) * batch_size * group.world, len(todo)), len(todo))
    group.barrier()  # every node's writer has stored everything before anyone reads
    keys = [None if key in failed else key for key in keys]
    absent = sum(key is None for key in keys)
    encoded = len(todo) - len(failed)
    return PrecomputeResult(keys, encoded, len(keys) - absent - encoded, absent)
