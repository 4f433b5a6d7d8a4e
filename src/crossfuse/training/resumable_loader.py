"""A training DataLoader that can continue an epoch from the middle.

A run killed half-way through a long epoch should not redo the batches it already
trained on. Lightning saves the ``state_dict`` of a training loader that has one in
each checkpoint and hands it back on resume (before the epoch's iterator is made);
:class:`ResumableLoader` records which epoch it is in and how many batches of it went
out, and on resume its :class:`ResumableSampler` starts that epoch's fixed order
(``seed + epoch``) just after them. Skipped rows are never decoded.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from crossfuse.errors import ConfigError


class ResumableSampler(DistributedSampler):
    """torch's DistributedSampler (this rank's share, reshuffled from ``seed + epoch``)
    whose next pass can start ``skip`` rows into the epoch's order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._skip = 0

    def resume(self, epoch: int, skip: int) -> None:
        """Make the next pass the rest of ``epoch`` after its first ``skip`` rows."""
        self.set_epoch(epoch)
        self._skip = skip

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return itertools.islice(super().__iter__(), skip, None)


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`ResumableSampler` with Lightning's stateful-loader
    interface. Its length stays the whole epoch's, as Lightning's loops expect: they
    count the batches done before the restart themselves."""

    sampler: ResumableSampler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ResumableSampler):
            raise TypeError("ResumableLoader needs a ResumableSampler")
        self._batches = 0  # batches of the current epoch handed out, restart included
        self._resume_at = 0  # batches of the epoch done before the restart
        self._generator_at_epoch_start: torch.Tensor | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        if self.generator is not None:  # it seeds the workers of this epoch
            self._generator_at_epoch_start = self.generator.get_state()
        self._batches, self._resume_at = self._resume_at, 0
        return self._count(super().__iter__())

    def _count(self, batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "epoch": int(self.sampler.epoch),
            "batches": self._batches,
            "batches_per_epoch": len(self),
        }
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
            if self._generator_at_epoch_start is not None:
                state["generator_at_epoch_start"] = self._generator_at_epoch_start
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, done, per_epoch = state["epoch"], state["batches"], state["batches_per_epoch"]
        if done >= per_epoch:  # taken after the epoch ended: the next one starts afresh
            self.sampler.set_epoch(epoch + 1)
            if self.generator is not None and "generator" in state:
                self.generator.set_state(state["generator"])
            return
        if per_epoch != len(self):
            raise ConfigError(
                f"the checkpoint stopped {done} of {per_epoch} batches into epoch {epoch + 1}, "
                f"but an epoch now has {len(self)} batches per process (other devices or "
                "batch size?); resume with the settings of the interrupted run"
            )
        self.sampler.resume(epoch, done * int(self.batch_size or 1))
        self._resume_at = done
        if self.generator is not None and "generator_at_epoch_start" in state:
            self.generator.set_state(state["generator_at_epoch_start"])
