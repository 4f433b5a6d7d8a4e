"""Early fusion: project, concatenate, and mix with an MLP.

Each input is projected to ``proj_dim``; absent rows get a learned per-input "missing"
embedding instead, so the MLP can tell "absent" from any real value. Unlike averaging
fusions, the MLP sees every input at once and can learn interactions between them.
"""

from __future__ import annotations

import torch
from torch import nn

from crossfuse.encoders.base import ModalityOutput
from crossfuse.fusion.base import Fusion, register_fusion
from crossfuse.fusion.weighted import (
    check_inputs,
    check_positive_int,
    check_rate,
    clean_pooled,
    present_matrix,
)


@register_fusion("concat")
class ConcatFusion(Fusion):
    """Concatenation of per-input projections followed by an MLP.

    Args:
        in_dims: {input: pooled width}.
        hidden: MLP width, also the output width.
        out_dims: {task: logits width}; unused (feature-level fusion).
        proj_dim: width of each input's projection; None means ``hidden``.
        layers: number of Linear → ReLU → Dropout blocks in the MLP.
        dropout: dropout rate after each block.
    """

    def __init__(
        self,
        *,
        in_dims: dict[str, int],
        hidden: int,
        out_dims: dict[str, int] | None = None,
        proj_dim: int | None = None,
        layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.names = check_inputs(in_dims, hidden)
        proj_dim = hidden if proj_dim is None else check_positive_int("concat proj_dim", proj_dim)
        check_positive_int("concat layers", layers)
        rate = check_rate("concat dropout", dropout)
        self.out_dim = hidden
        self.proj = nn.ModuleList(nn.Linear(in_dims[n], proj_dim) for n in self.names)
        self.missing = nn.Parameter(torch.randn(len(self.names), proj_dim) * 0.02)  # (M, P)
        blocks: list[nn.Module] = []
        width = len(self.names) * proj_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(rate)]
            width = hidden
        self.mlp = nn.Sequential(*blocks)

    def slots(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        """Per-input projections with absent rows replaced by the missing embeddings.

        Returns (B, M, proj_dim), inputs in sorted order.
        """
        present = present_matrix(outputs, self.names)  # (B, M)
        h = torch.stack(
            [p(clean_pooled(outputs[n])) for p, n in zip(self.proj, self.names, strict=True)],
            dim=1,
        )  # (B, M, P)
        return torch.where(present[:, :, None], h, self.missing.expand_as(h))

    def forward(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        s = self.slots(outputs)  # (B, M, P)
        return self.mlp(s.flatten(1))  # (B, M*P) -> (B, hidden)
