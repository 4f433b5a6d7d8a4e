"""Late (decision-level) fusion: one classifier per input, predictions averaged.

Each input gets its own small MLP that predicts the logits of every task (concatenated
in ``out_dims`` order). The per-input logits are combined with learned weights
(softmax over logits, equal at start) renormalised over the inputs present in each row.
Rows with no input present get a learned bias vector, which acts as a class prior.
Because each input decides alone, this fusion is robust to missing inputs but cannot
learn interactions between them.
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
    fill_empty,
    per_input_heads,
    present_matrix,
    renormalise,
)


@register_fusion("late")
class LateFusion(Fusion):
    """Weighted average of per-input task logits.

    Args:
        in_dims: {input: pooled width}.
        hidden: width of each per-input MLP.
        out_dims: {task: logits width}; the output is all tasks' logits concatenated.
        dropout: dropout rate inside each per-input MLP.
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
        widths = check_out_dims(out_dims, "late fusion")
        rate = check_rate("late dropout", dropout)
        self.out_dim = sum(widths)
        self.heads = per_input_heads(in_dims, self.names, hidden, self.out_dim, rate)
        self.logits = nn.Parameter(torch.zeros(len(self.names)))  # input weights, pre-softmax
        self.bias = nn.Parameter(torch.zeros(self.out_dim))  # output when nothing is present

    def row_weights(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        """Effective weights per row, renormalised over present inputs: (B, M)."""
        present = present_matrix(outputs, self.names)
        return renormalise(torch.softmax(self.logits, dim=0), present)

    def modality_weights(self, outputs: dict[str, ModalityOutput]) -> dict[str, torch.Tensor]:
        """{input: (B,) effective weight}, 0 where the input is absent."""
        w = self.row_weights(outputs)  # (B, M)
        return {n: w[:, i] for i, n in enumerate(self.names)}

    def per_input_logits(self, outputs: dict[str, ModalityOutput]) -> dict[str, torch.Tensor]:
        """{input: (B, out_dim) logits of that input's own head}.

        Rows where the input is absent are computed from zeros; they carry no meaning
        and get weight 0 in the combination.
        """
        present_matrix(outputs, self.names)  # checks the input names
        return {
            n: head(clean_pooled(outputs[n]))
            for head, n in zip(self.heads, self.names, strict=True)
        }

    def forward(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        w = self.row_weights(outputs)  # (B, M)
        per_input = self.per_input_logits(outputs)
        z = torch.stack([per_input[n] for n in self.names], dim=1)  # (B, M, K)
        fused = (w[:, :, None] * z).sum(dim=1)  # (B, K)
        return fill_empty(fused, w, self.bias)
