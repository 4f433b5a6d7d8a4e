"""Low-rank multimodal fusion (Liu et al. 2018, "LMF").

Tensor fusion multiplies the outer product of the extended inputs ``x̃_m = (p_m, 1)`` by
a weight tensor with ``prod(P_m + 1) × hidden`` entries. LMF writes that weight tensor
as a sum of ``rank`` outer products of per-input factors ``W_m^r`` of shape
``(P_m + 1, hidden)``, which lets the product be computed without ever forming the big
tensor::

    fused = sum_r  prod_m (x̃_m · W_m^r)  + bias      # prod is element-wise over hidden

Cost and parameters grow linearly in the number of inputs instead of exponentially.
Inputs are projected (Linear then tanh) to ``proj_dim`` first; an absent input
contributes ``(0, ..., 0, 1)``, as in tensor fusion (see ``crossfuse.fusion.tensor``),
so only its factors' last rows enter, a learned constant that carries no data.
"""

from __future__ import annotations

import torch
from torch import nn

from crossfuse.encoders.base import ModalityOutput
from crossfuse.fusion.base import Fusion, register_fusion
from crossfuse.fusion.tensor import extended, proj_dims
from crossfuse.fusion.weighted import check_inputs, check_positive_int, check_rate


@register_fusion("low-rank")
class LowRankFusion(Fusion):
    """Rank-``rank`` factorised tensor fusion.

    Args:
        in_dims: {input: pooled width}.
        hidden: output width.
        out_dims: {task: logits width}; unused (feature-level fusion).
        proj_dim: width of each input's projection (int, or {input: int}).
        rank: number of rank-one terms (>= 1).
        dropout: dropout rate on the projections, before they are extended by 1.
    """

    def __init__(
        self,
        *,
        in_dims: dict[str, int],
        hidden: int,
        out_dims: dict[str, int] | None = None,
        proj_dim: int | dict[str, int] = 16,
        rank: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.names = check_inputs(in_dims, hidden)
        dims = proj_dims(proj_dim, self.names, "low-rank")
        self.rank = check_positive_int("low-rank rank", rank)
        rate = check_rate("low-rank dropout", dropout)
        self.out_dim = hidden
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dims[n], dims[n]), nn.Tanh(), nn.Dropout(rate))
            for n in self.names
        )
        # each x̃_m · W_m^r starts with unit-scale entries, so products of M factors stay O(1)
        self.factors = nn.ParameterList(
            nn.Parameter(torch.randn(rank, dims[n] + 1, hidden) / (dims[n] + 1) ** 0.5)
            for n in self.names
        )  # each (R, P_m + 1, H)
        self.bias = nn.Parameter(torch.zeros(hidden))

    def per_input_factors(self, outputs: dict[str, ModalityOutput]) -> list[torch.Tensor]:
        """Every input's ``x̃_m · W_m^r`` for all ranks: [(B, R, hidden)] in sorted order."""
        slots = extended(outputs, self.names, self.proj)  # [(B, P_m + 1)]
        return [torch.einsum("bp,rph->brh", s, w) for s, w in zip(slots, self.factors, strict=True)]

    def forward(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        factors = self.per_input_factors(outputs)
        z = factors[0]  # (B, R, H)
        for f in factors[1:]:
            z = z * f
        return z.sum(dim=1) + self.bias  # (B, H)
