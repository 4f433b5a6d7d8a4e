"""Validation outputs gathered across processes with torchmetrics.

Under DDP every rank scores its own shard of the validation rows. :class:`RowOutputs`
is a torchmetrics ``Metric`` whose states are concatenated over ranks on ``compute()``
(torchmetrics' all-gather handles shards of different sizes), and each row's table
index lets it drop a row seen twice, so the metrics are those of the whole validation
table — the same numbers one process would report.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class RowOutputs(Metric):
    """Per-row scores, targets, label presence and table index of one task."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__(compute_on_cpu=True)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("present", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(  # type: ignore[override]
        self,
        scores: torch.Tensor,  # (B, C) probabilities or (B,) predictions
        targets: torch.Tensor,  # (B,)
        present: torch.Tensor,  # (B,) bool: the row has a label
        index: torch.Tensor,  # (B,) row number in the validation table
    ) -> None:
        self.scores.append(scores.detach().float())
        self.targets.append(targets.detach().float())
        self.present.append(present.detach().to(torch.uint8))  # bool cannot be gathered by gloo
        self.index.append(index.detach().long())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and targets of the labelled rows, one per table row, in table order."""
        if isinstance(self.index, list) and not self.index:  # a tensor once gathered
            return torch.zeros(0), torch.zeros(0)
        index = dim_zero_cat(self.index).cpu()
        order = torch.argsort(index, stable=True)
        index = index[order]
        first = torch.ones_like(index, dtype=torch.bool)  # a padded duplicate is dropped
        first[1:] = index[1:] != index[:-1]
        keep = order[first]
        present = dim_zero_cat(self.present).cpu()[keep].bool()
        scores = dim_zero_cat(self.scores).cpu()[keep][present]
        targets = dim_zero_cat(self.targets).cpu()[keep][present]
        return scores, targets
