"""The LightningDataModule of a fit: the cache fill, the datasets and their samplers.

Lightning calls :meth:`FusionDataModule.setup` in every process once the process group
exists, so under DDP the ranks split the frozen encoders' work there, and each rank's
loaders read only its shard of the rows (training rows reshuffled every epoch from
``seed + epoch``, so a resumed run sees the same order as an uninterrupted one, and
continues a half-done epoch after the batches it had trained on).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Sampler

from crossfuse.cache.sharded import RankGroup
from crossfuse.config import TrainConfig
from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.table import Table
from crossfuse.errors import ConfigError
from crossfuse.models import FusionModel
from crossfuse.training.cached_inputs import CachedColumn, cache_table
from crossfuse.training.resumable_loader import ResumableLoader, ResumableSampler


class ShardSampler(Sampler[int]):
    """Rows ``rank, rank + world, …`` in order: each validation row is scored by one rank
    only (no padding), unlike torch's DistributedSampler."""

    def __init__(self, size: int, rank: int, world: int) -> None:
        self.size, self.rank, self.world = size, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world))


class FusionDataModule(pl.LightningDataModule):
    """Training and validation data of one fit.

    Args:
        cached_inputs: inputs whose frozen encoder output is read from the embedding cache.
        progress: ``progress(column, table)`` → a ``(done, total)`` callback, or None.
    """

    def __init__(
        self,
        model: FusionModel,
        pre: Preprocessor,
        train: Table,
        valid: Table,
        config: TrainConfig,
        *,
        cached_inputs: list[str],
        strict: bool = False,
        progress: Callable | None = None,
    ) -> None:
        super().__init__()
        self.model, self.pre, self.config = model, pre, config
        self.tables = {"train": train, "valid": valid}
        self.cached_inputs, self.strict, self.progress = cached_inputs, strict, progress
        self.cached: dict[str, dict[str, CachedColumn]] = {"train": {}, "valid": {}}
        self.encode_seconds = 0.0
        self.datasets: dict[str, FusionDataset] = {}

    def setup(self, stage: str) -> None:
        if self.datasets:
            return
        rank, world = self._place()
        if len(self.tables["valid"]) < world:
            raise ConfigError(
                f"{len(self.tables['valid'])} validation rows cannot be shared by {world} "
                "processes; give a larger validation table or fewer devices"
            )
        start = time.perf_counter()
        if self.cached_inputs:
            trainer = self.trainer
            device = trainer.strategy.root_device if trainer else torch.device("cpu")
            group = RankGroup.current(trainer.local_rank) if trainer else None
            for part, table in self.tables.items():
                self.cached[part] = cache_table(
                    self.model,
                    self.pre,
                    table,
                    self.cached_inputs,
                    self.config,
                    device=device,
                    progress=self.progress if rank == 0 else None,
                    group=group,
                )
        self.encode_seconds = time.perf_counter() - start
        for part, table in self.tables.items():
            self.datasets[part] = FusionDataset(
                table,
                self.pre,
                train=part == "train",
                strict=self.strict,
                cached=self.cached[part],
            )

    def steps_per_epoch(self) -> int:
        """Training batches per epoch in each process (the length of its loader).

        The LR schedule needs it before training starts; Lightning's own estimate
        would build the training loader before a checkpoint is restored, and a loader
        built then cannot take up a half-done epoch.
        """
        return math.ceil(len(self._train_sampler()) / self.config.batch_size)

    def _place(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer else (0, 1)

    def train_dataloader(self) -> DataLoader:
        sampler = self._train_sampler()
        return self._loader(self.datasets["train"], sampler, sampler.rank, loader=ResumableLoader)

    def _train_sampler(self) -> ResumableSampler:
        rank, world = self._place()
        return ResumableSampler(
            self.datasets["train"],
            num_replicas=world,
            rank=rank,
            shuffle=True,
            seed=self.config.seed,
        )  # Lightning calls set_epoch: a new order every epoch, the same on resume

    def val_dataloader(self) -> DataLoader:
        rank, world = self._place()
        dataset = self.datasets["valid"]
        return self._loader(dataset, ShardSampler(len(dataset), rank, world), rank)

    def _loader(
        self,
        dataset: FusionDataset,
        sampler: Sampler,
        rank: int,
        loader: type[DataLoader] = DataLoader,
    ) -> DataLoader:
        return loader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            collate_fn=Collator(self.pre, dataset.cached),
            num_workers=self.config.num_workers,
            generator=torch.Generator().manual_seed(self.config.seed + rank),
            persistent_workers=self.config.num_workers > 0,
        )
