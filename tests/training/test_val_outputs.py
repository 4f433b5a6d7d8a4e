"""RowOutputs: validation rows gathered over ranks, each row once, in table order."""

from __future__ import annotations

import json

import pytest
import torch

from crossfuse.training.val_outputs import RowOutputs
from tests.distributed import run_ranks


def test_rows_come_back_in_table_order_without_duplicates_or_unlabelled_rows():
    out = RowOutputs()
    out.update(
        torch.tensor([[0.9, 0.1], [0.2, 0.8]]),
        torch.tensor([0, 1]),
        torch.tensor([True, False]),
        torch.tensor([3, 1]),
    )
    out.update(
        torch.tensor([[0.6, 0.4], [0.9, 0.1]]),
        torch.tensor([1, 0]),
        torch.tensor([True, True]),
        torch.tensor([0, 3]),
    )  # row 3 again (padding)
    scores, targets = out.compute()
    assert targets.tolist() == [1.0, 0.0]  # rows 0 and 3; row 1 has no label
    assert torch.allclose(scores, torch.tensor([[0.6, 0.4], [0.9, 0.1]]))


def test_empty_collector_gives_empty_outputs():
    with pytest.warns(UserWarning, match="before the ``update``"):
        scores, targets = RowOutputs().compute()
    assert scores.numel() == 0 and targets.numel() == 0


def _gather(rank: int, world: int, folder) -> None:
    out = RowOutputs()
    rows = list(range(rank, 7, world))  # uneven shards: rank 0 has 4 rows, rank 1 has 3
    if rank == 1:
        rows.append(0)  # a padded duplicate of a row rank 0 also scores
    index = torch.tensor(rows)
    out.update(
        index.float().unsqueeze(1).repeat(1, 2),
        index % 2,
        torch.ones(len(rows), dtype=torch.bool),
        index,
    )
    scores, targets = out.compute()
    (folder / f"rank{rank}.json").write_text(
        json.dumps({"scores": scores[:, 0].tolist(), "targets": targets.tolist()})
    )


def test_two_ranks_each_get_every_row_once(tmp_path):
    run_ranks(_gather, 2, tmp_path, tmp_path)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["scores"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        assert got["targets"] == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
