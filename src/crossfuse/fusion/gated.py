"""Gated multimodal units (Arevalo et al. 2017, "GMU"), generalised to any number of inputs.

Each input gives a candidate ``h_m = tanh(W_m x_m)``; a gate network looks at all the
inputs at once (absent ones replaced by a learned per-input "missing" vector) and
decides how much of each candidate enters the output ``sum_m z_m h_m``. Gates of absent
inputs are forced to 0. With ``normalize=True`` the gates are a softmax over the present
inputs (they sum to 1, a data-dependent weighted average); with ``normalize=False`` each
gate is an independent sigmoid, so the fused vector can also shrink when no input is
convincing. A row where no input is present gets a learned "empty" vector.
"""

from __future__ import annotations

import torch
from torch import nn

from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError
from crossfuse.fusion.base import Fusion, register_fusion
from crossfuse.fusion.weighted import (
    check_inputs,
    check_rate,
    clean_pooled,
    fill_empty,
    present_matrix,
)


def masked_softmax(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Softmax of ``logits (B, M)`` over the ``present (B, M)`` entries; absent entries get 0.

    Rows with nothing present get all zeros. Absent logits are replaced (not added to),
    and no ``-inf`` is used, so neither values nor gradients can become NaN.
    """
    lowest = torch.full_like(logits, torch.finfo(logits.dtype).min)
    probs = torch.softmax(torch.where(present, logits, lowest), dim=1)  # (B, M)
    return torch.where(present, probs, torch.zeros_like(probs))


@register_fusion("gated")
class GatedFusion(Fusion):
    """Gated sum of per-input tanh units, gates computed from all inputs together.

    Args:
        in_dims: {input: pooled width}.
        hidden: width of each unit, also the output width.
        out_dims: {task: logits width}; unused (feature-level fusion).
        normalize: True: softmax gates over the present inputs (sum to 1);
            False: independent sigmoid gates in [0, 1].
        dropout: dropout rate on the units before they are gated.
    """

    def __init__(
        self,
        *,
        in_dims: dict[str, int],
        hidden: int,
        out_dims: dict[str, int] | None = None,
        normalize: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.names = check_inputs(in_dims, hidden)
        if not isinstance(normalize, bool):
            raise ConfigError(f"gated normalize must be true or false, got {normalize!r}")
        rate = check_rate("gated dropout", dropout)
        self.out_dim = hidden
        self.normalize = normalize
        widths = [in_dims[n] for n in self.names]
        self.units = nn.ModuleList(nn.Sequential(nn.Linear(w, hidden), nn.Tanh()) for w in widths)
        self.missing = nn.ParameterList(nn.Parameter(torch.randn(w) * 0.02) for w in widths)
        self.gate = nn.Linear(sum(widths), len(self.names))  # all inputs → one logit per input
        self.drop = nn.Dropout(rate)
        self.empty = nn.Parameter(torch.randn(hidden) * 0.02)

    def gates(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        """Gate of every input per row, 0 where the input is absent: (B, M)."""
        present = present_matrix(outputs, self.names)  # (B, M)
        slots = []  # each (B, D_m); absent rows hold the learned missing vector
        for i, (n, miss) in enumerate(zip(self.names, self.missing, strict=True)):
            x = clean_pooled(outputs[n])  # (B, D_m)
            slots.append(torch.where(present[:, i : i + 1], x, miss.expand_as(x)))
        logits = self.gate(torch.cat(slots, dim=1))  # (B, M)
        if self.normalize:
            return masked_softmax(logits, present)
        return torch.where(present, torch.sigmoid(logits), torch.zeros_like(logits))

    def modality_weights(self, outputs: dict[str, ModalityOutput]) -> dict[str, torch.Tensor]:
        """{input: (B,) gate}, 0 where the input is absent."""
        z = self.gates(outputs)  # (B, M)
        return {n: z[:, i] for i, n in enumerate(self.names)}

    def units_of(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        """Every input's unit ``tanh(W_m x_m)`` (absent rows from zeros): (B, M, hidden)."""
        return torch.stack(
            [u(clean_pooled(outputs[n])) for u, n in zip(self.units, self.names, strict=True)],
            dim=1,
        )

    def forward(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        z = self.gates(outputs)  # (B, M)
        h = self.drop(self.units_of(outputs))  # (B, M, H)
        fused = (z[:, :, None] * h).sum(dim=1)  # (B, H)
        present = present_matrix(outputs, self.names).to(fused.dtype)  # (B, M)
        return fill_empty(fused, present, self.empty)  # sigmoid gates may underflow to 0
