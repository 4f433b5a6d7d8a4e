"""Ensemble: separately trained unimodal models whose predictions are averaged.

The decision-level baseline of the fusion literature. Each input gets its own small
MLP predicting every task; during training each member is fitted to the labels on its
own (``members`` → one loss per member, so no member's gradient reaches another
input's encoder), exactly as if the unimodal models were trained apart. At prediction
time the members present in a row are averaged: class probabilities for
classification tasks (returned as log-probabilities, which are valid logits),
values for regression tasks (tasks with a logits width of 1). Rows with no input
present get a learned prior, itself fitted to the labels as one more member.
"""

from __future__ import annotations

import torch
from torch import nn

from crossfuse.encoders.base import ModalityOutput
from crossfuse.fusion.base import Fusion, register_fusion
from crossfuse.fusion.weighted import (
    check_inputs,
    check_out_dims,
    check_rate,
    clean_pooled,
    per_input_heads,
    present_matrix,
)

_TINY = 1e-12  # floor for averaged probabilities before the log


@register_fusion("ensemble")
class EnsembleFusion(Fusion):
    """Average of per-input models' probabilities (or values), each trained on its own.

    Args:
        in_dims: {input: pooled width}.
        hidden: width of each member's MLP.
        out_dims: {task: logits width}; width 1 means a regression task.
        dropout: dropout rate inside each member.
    """

    decision_level = True

    def __init__(
        self,
        *,
        in_dims: dict[str, int],
        hidden: int,
        out_dims: dict[str, int],
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.names = check_inputs(in_dims, hidden)
        self.widths = check_out_dims(out_dims, "ensemble")
        rate = check_rate("ensemble dropout", dropout)
        self.out_dim = sum(self.widths)
        self.members_ = per_input_heads(in_dims, self.names, hidden, self.out_dim, rate)
        self.prior = nn.Parameter(torch.zeros(self.out_dim))  # fitted like a member

    def member_logits(self, outputs: dict[str, ModalityOutput]) -> dict[str, torch.Tensor]:
        """{input: (B, out_dim) logits of that input's model} (absent rows: inputs zeroed)."""
        return {
            n: m(clean_pooled(outputs[n])) for n, m in zip(self.names, self.members_, strict=True)
        }

    def members(
        self, outputs: dict[str, ModalityOutput]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(logits (B, out_dim), rows (B,) bool)`` per member, for one loss per member."""
        logits = self.member_logits(outputs)
        batch = next(iter(outputs.values())).present.shape[0]
        pairs = [(logits[n], outputs[n].present) for n in self.names]
        everyone = torch.ones(batch, dtype=torch.bool, device=self.prior.device)
        return [*pairs, (self.prior.expand(batch, -1), everyone)]

    def modality_weights(self, outputs: dict[str, ModalityOutput]) -> dict[str, torch.Tensor]:
        """{input: (B,) weight}: equal over the inputs present in the row, 0 when absent."""
        present = present_matrix(outputs, self.names).float()  # (B, M)
        w = present / present.sum(1, keepdim=True).clamp(min=1.0)
        return {n: w[:, i] for i, n in enumerate(self.names)}

    def forward(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        present = present_matrix(outputs, self.names)  # (B, M); checks the input names
        logits = self.member_logits(outputs)
        weights = present.float() / present.sum(1, keepdim=True).clamp(min=1).float()
        stacked = torch.stack([logits[n] for n in self.names], dim=1)  # (B, M, out)
        parts = []
        for chunk in stacked.split(self.widths, dim=2):  # per task: (B, M, C)
            if chunk.shape[2] == 1:  # regression: mean of the members' values
                values = torch.where(present[..., None], chunk, torch.zeros_like(chunk))
                parts.append((values * weights[..., None]).sum(1))
            else:  # classification: mean of the members' probabilities, as log-probs
                probs = torch.where(present[..., None], chunk.softmax(-1), torch.zeros_like(chunk))
                parts.append(torch.log((probs * weights[..., None]).sum(1).clamp(min=_TINY)))
        fused = torch.cat(parts, dim=1)  # (B, out_dim)
        empty = ~present.any(1, keepdim=True)
        return torch.where(empty, self.prior.expand_as(fused), fused)
