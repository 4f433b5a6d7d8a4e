"""``tabular-mlp``: numeric values, their missingness and categorical embeddings → MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from crossfuse.encoders.base import Encoder, InputSpec, ModalityOutput, register_encoder
from crossfuse.encoders.text import check_dropout, check_positive, zero_absent
from crossfuse.errors import ConfigError


def embedding_width(cardinality: int, cap: int = 16) -> int:
    """The usual rule of thumb: about half the number of ids, at most ``cap``, at least 1."""
    return max(1, min(cap, (cardinality + 1) // 2))


@register_encoder("tabular-mlp", "tabular")
class TabularMLPEncoder(Encoder):
    """An MLP over ``[numbers, number-present flags, category embeddings]``.

    Expects ``{"numeric": (B, N), "numeric_present": (B, N) bool, "categorical": (B, M)
    long with 0 = missing and 1 = unknown, "present": (B,)}``. Missing numbers enter as
    0 *and* a 0 flag, so missingness is a learnable signal rather than a fake value;
    a missing category is the all-zero padding embedding. Tokens: one per column (a
    per-column affine map of the number, or the projected category embedding), masked
    by per-cell presence, for attention-based fusions.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        dim: int = 128,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.1,
        cat_max_dim: int = 16,
    ) -> None:
        super().__init__()
        cards = list(spec.cardinalities)
        if spec.n_numeric < 0 or (spec.n_numeric == 0 and not cards):
            raise ConfigError(
                f"tabular input {spec.name!r} has no numeric or categorical columns to encode"
            )
        if any(c < 2 for c in cards):
            raise ConfigError(
                f"tabular input {spec.name!r}: every categorical cardinality must count the "
                f"two reserved ids (missing, unknown), so be ≥ 2; got {cards}"
            )
        hidden = tuple(hidden)
        check_positive(dim=dim, cat_max_dim=cat_max_dim)
        check_positive(**{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        check_dropout(dropout)
        self.out_dim = dim
        n = spec.n_numeric
        widths = [embedding_width(c, cat_max_dim) for c in cards]
        self.embeds = nn.ModuleList(
            nn.Embedding(c, w, padding_idx=0) for c, w in zip(cards, widths, strict=True)
        )
        layers: list[nn.Module] = []
        width = 2 * n + sum(widths)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.mlp = nn.Sequential(*layers, nn.Linear(width, dim))
        # Token path: number j → value * num_weight[j] + num_bias[j]; category j → cat_proj[j].
        self.num_weight = nn.Parameter(torch.empty(n, dim).uniform_(-1.0, 1.0))
        self.num_bias = nn.Parameter(torch.empty(n, dim).uniform_(-1.0, 1.0))
        self.cat_proj = nn.ModuleList(nn.Linear(w, dim) for w in widths)

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModalityOutput:
        num, num_present = inputs["numeric"], inputs["numeric_present"]  # (B, N), (B, N)
        cat, present = inputs["categorical"], inputs["present"]  # (B, M), (B,)
        num = torch.where(num_present, num, torch.zeros((), dtype=num.dtype, device=num.device))
        embedded = [emb(cat[:, j]) for j, emb in enumerate(self.embeds)]  # M × (B, w_j)
        features = torch.cat([num, num_present.to(num.dtype), *embedded], dim=1)  # (B, F)
        pooled = zero_absent(self.mlp(features), present)  # (B, D)

        num_tokens = num.unsqueeze(-1) * self.num_weight + self.num_bias  # (B, N, D)
        cat_tokens = [proj(e) for proj, e in zip(self.cat_proj, embedded, strict=True)]
        tokens = torch.cat([num_tokens, *(t.unsqueeze(1) for t in cat_tokens)], dim=1)  # (B, T, D)
        mask = torch.cat([num_present, cat != 0], dim=1) & present.unsqueeze(1)  # (B, N+M)
        tokens = tokens * mask.unsqueeze(-1)
        return ModalityOutput(pooled=pooled, present=present, tokens=tokens, token_mask=mask)
