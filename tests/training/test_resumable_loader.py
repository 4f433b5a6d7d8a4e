"""ResumableLoader: its state says where in which epoch it is, and a loader given that
state hands out exactly the batches an uninterrupted loader had left."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from crossfuse.errors import ConfigError
from crossfuse.training.checkpoint_io import SafeCheckpointIO
from crossfuse.training.resumable_loader import ResumableLoader, ResumableSampler


class Rows(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n
        self.seen: list[int] = []  # every row decoded, in order

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        self.seen.append(i)
        return i


def checkpoint_loader_state(path: Path) -> dict:
    """The training loader's state in a Lightning checkpoint written by crossfuse."""
    loops = SafeCheckpointIO().load_checkpoint(path)["loops"]
    return loops["fit_loop"]["state_dict"]["combined_loader"][0]


def loader(rows: Rows, *, rank: int = 0, world: int = 1, batch_size: int = 4) -> ResumableLoader:
    sampler = ResumableSampler(rows, num_replicas=world, rank=rank, shuffle=True, seed=7)
    generator = torch.Generator().manual_seed(3)
    return ResumableLoader(rows, batch_size=batch_size, sampler=sampler, generator=generator)


def batches(it, n: int | None = None) -> list[list[int]]:
    out = []
    for b in it:
        out.append(b.tolist())
        if n is not None and len(out) == n:
            break
    return out


@pytest.mark.parametrize("world", [1, 2])
def test_a_restored_loader_finishes_the_epoch_where_the_first_stopped(world: int) -> None:
    for rank in range(world):
        whole = loader(Rows(30), rank=rank, world=world)
        whole.sampler.set_epoch(2)
        expected = batches(whole)

        first = loader(Rows(30), rank=rank, world=world)
        first.sampler.set_epoch(2)
        done = batches(iter(first), n=2)
        state = first.state_dict()
        assert (state["epoch"], state["batches"], state["batches_per_epoch"]) == (
            2,
            2,
            len(whole),
        )

        rows = Rows(30)
        second = loader(rows, rank=rank, world=world)
        second.load_state_dict(state)
        rest = batches(second)
        assert done + rest == expected
        assert sorted(rows.seen) == sorted(i for b in rest for i in b)  # skipped rows not read
        assert second.state_dict()["batches"] == len(whole)  # counts the earlier batches
        assert batches(second) != rest  # the skip applies to one pass only


def test_a_state_taken_at_the_end_of_an_epoch_starts_the_next() -> None:
    first = loader(Rows(10))
    first.sampler.set_epoch(4)
    batches(first)
    second = loader(Rows(10))
    second.load_state_dict(first.state_dict())
    assert second.sampler.epoch == 5
    assert torch.equal(second.generator.get_state(), first.generator.get_state())
    reference = loader(Rows(10))
    reference.sampler.set_epoch(5)
    assert batches(second) == batches(reference)


def test_a_mid_epoch_state_of_another_epoch_length_is_refused() -> None:
    first = loader(Rows(30))
    batches(iter(first), n=1)
    other = loader(Rows(30), batch_size=5)
    with pytest.raises(ConfigError, match="1 of 8 batches into epoch 1.*now has 6"):
        other.load_state_dict(first.state_dict())


def test_the_loader_needs_a_resumable_sampler() -> None:
    with pytest.raises(TypeError, match="ResumableSampler"):
        ResumableLoader(Rows(3), batch_size=2)
