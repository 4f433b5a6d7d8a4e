"""Tensor fusion (Zadeh et al. 2017, "Tensor Fusion Network").

Each input is projected to a small vector (Linear then tanh, so every factor stays in
[-1, 1] and products of many factors cannot blow up) and extended with a constant 1:
``x̃_m = (p_m, 1)``. The outer product of all the ``x̃_m`` holds every product of one
coordinate per input, so it contains the unimodal terms, all pairwise interactions, ...,
up to the full M-way interaction. It is flattened (``prod(proj_dim_m + 1)`` features)
and an MLP maps it to ``hidden``.

Absent inputs: an absent input contributes ``x̃_m = (0, ..., 0, 1)``. Its slot then
keeps only the terms that do not involve it (the "1" coordinate passes the lower-order
terms of the other inputs through), so the tensor of a row equals the tensor fusion of
its present inputs alone, embedded in the full tensor, and the absent values reach
nothing. The price: "absent" looks like an input whose projection is exactly zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError
from crossfuse.fusion.base import Fusion, register_fusion
from crossfuse.fusion.weighted import (
    check_inputs,
    check_positive_int,
    check_rate,
    clean_pooled,
    present_matrix,
)


def proj_dims(option: object, names: list[str], what: str) -> dict[str, int]:
    """Resolve ``proj_dim``: one positive int for every input, or {input: int} naming all."""
    if isinstance(option, dict):
        if set(option) != set(names):
            raise ConfigError(f"{what} proj_dim must name exactly {names}, got {sorted(option)}")
        return {n: check_positive_int(f"{what} proj_dim of {n!r}", option[n]) for n in names}
    value = check_positive_int(f"{what} proj_dim", option)
    return dict.fromkeys(names, value)


def extended(
    outputs: dict[str, ModalityOutput], names: list[str], proj: nn.ModuleList
) -> list[torch.Tensor]:
    """Every input's ``(proj(x), 1)``, or ``(0, ..., 0, 1)`` where absent: [(B, P_m + 1)]."""
    present = present_matrix(outputs, names)  # (B, M)
    slots = []
    for i, (n, p) in enumerate(zip(names, proj, strict=True)):
        h = p(clean_pooled(outputs[n]))  # (B, P_m)
        h = torch.where(present[:, i : i + 1], h, torch.zeros_like(h))
        slots.append(torch.cat([h, torch.ones_like(h[:, :1])], dim=1))  # (B, P_m + 1)
    return slots


def outer_product(slots: list[torch.Tensor]) -> torch.Tensor:
    """Flattened outer product of ``slots`` [(B, K_m)], first slot varying slowest."""
    z = slots[0]  # (B, K_0)
    for s in slots[1:]:
        z = (z[:, :, None] * s[:, None, :]).flatten(1)  # (B, K_0 * ... * K_m)
    return z


@register_fusion("tensor")
class TensorFusion(Fusion):
    """Outer product of the inputs' projections (each extended by 1), then an MLP.

    Args:
        in_dims: {input: pooled width}.
        hidden: MLP width, also the output width.
        out_dims: {task: logits width}; unused (feature-level fusion).
        proj_dim: width of each input's projection (int, or {input: int}).
        layers: number of Linear → ReLU → Dropout blocks in the MLP.
        dropout: dropout rate after each block.
        max_features: refuse to build when ``prod(proj_dim_m + 1)`` exceeds this.
    """

    def __init__(
        self,
        *,
        in_dims: dict[str, int],
        hidden: int,
        out_dims: dict[str, int] | None = None,
        proj_dim: int | dict[str, int] = 8,
        layers: int = 2,
        dropout: float = 0.1,
        max_features: int = 65_536,
    ) -> None:
        super().__init__()
        self.names = check_inputs(in_dims, hidden)
        dims = proj_dims(proj_dim, self.names, "tensor")
        check_positive_int("tensor layers", layers)
        rate = check_rate("tensor dropout", dropout)
        check_positive_int("tensor max_features", max_features)
        size = math.prod(dims[n] + 1 for n in self.names)
        if size > max_features:
            shown = " × ".join(str(dims[n] + 1) for n in self.names)
            raise ConfigError(
                f"tensor fusion of {len(self.names)} inputs would have {size:,} features "
                f"({shown}), more than max_features={max_features:,}; use a smaller "
                "proj_dim, raise max_features, or use the 'low-rank' fusion"
            )
        self.out_dim = hidden
        self.n_features = size
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dims[n], dims[n]), nn.Tanh()) for n in self.names
        )
        blocks: list[nn.Module] = []
        width = size
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(rate)]
            width = hidden
        self.mlp = nn.Sequential(*blocks)

    def fused_tensor(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        """The flattened outer product before the MLP: (B, prod(proj_dim_m + 1))."""
        return outer_product(extended(outputs, self.names, self.proj))

    def forward(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        return self.mlp(self.fused_tensor(outputs))  # (B, F) -> (B, hidden)
