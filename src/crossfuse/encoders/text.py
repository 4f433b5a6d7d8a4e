"""``text-gru``: token embeddings → bidirectional GRU → per-token features and a pooled vector.

Also holds the small masked-pooling helpers the sequence encoders share (audio uses them too).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from crossfuse.encoders.base import Encoder, InputSpec, ModalityOutput, register_encoder
from crossfuse.errors import ConfigError


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``tokens (B, T, D)`` over positions where ``mask (B, T)``; rows with none give 0."""
    m = mask.unsqueeze(-1).to(tokens.dtype)  # (B, T, 1)
    return (tokens * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)


def zero_absent(x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``x (B, ...)`` with the rows where ``present (B,)`` is False set to exactly zero.

    ``torch.where`` (not a multiply) so that even a non-finite value cannot leak through.
    """
    keep = present.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


class MeanPool(nn.Module):
    """Masked mean over the real tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(tokens, mask)


class AttentionPool(nn.Module):
    """Weighted mean whose weights are a softmax, over real tokens only, of a learned query.

    The query starts at zero, so training starts from plain mean pooling.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))
        self.scale = dim**-0.5

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = (tokens @ self.query) * self.scale  # (B, T)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1) * mask  # rows without real tokens → all zero
        return (weights.unsqueeze(-1) * tokens).sum(1)  # (B, D)


POOLINGS: dict[str, type[nn.Module]] = {"mean": MeanPool, "attention": AttentionPool}


def make_pooling(name: str, dim: int) -> nn.Module:
    """The pooling module called ``name`` for tokens of width ``dim``."""
    if name not in POOLINGS:
        raise ConfigError(f"unknown pooling {name!r}; choose one of: {', '.join(sorted(POOLINGS))}")
    return POOLINGS[name](dim)


def check_positive(**values: int) -> None:
    """Raise ConfigError unless every keyword value is an integer ≥ 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def check_dropout(dropout: float) -> None:
    """Raise ConfigError unless ``0 <= dropout < 1``."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")


@register_encoder("text-gru", "text")
class TextGRUEncoder(Encoder):
    """Embedding → dropout → packed bidirectional GRU → Linear to ``dim``, then pooled.

    Expects ``{"ids": (B, T) long with 0 = pad, "lengths": (B,), "present": (B,)}``.
    Packing by length makes trailing padding invisible; rows of length 0 (absent cells)
    run as length 1 and are then zeroed, with an all-False token mask.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        dim: int = 128,
        embed_dim: int = 64,
        hidden: int = 64,
        layers: int = 1,
        pooling: str = "mean",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if spec.vocab_size < 2:
            raise ConfigError(
                f"text input {spec.name!r} needs a vocabulary of at least 2 ids (<pad>, <unk>), "
                f"got vocab_size={spec.vocab_size}"
            )
        check_positive(dim=dim, embed_dim=embed_dim, hidden=hidden, layers=layers)
        check_dropout(dropout)
        self.out_dim = dim
        self.embed = nn.Embedding(spec.vocab_size, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            embed_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.proj = nn.Linear(2 * hidden, dim)
        self.pool = make_pooling(pooling, dim)

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModalityOutput:
        ids, present = inputs["ids"], inputs["present"]  # (B, T), (B,)
        steps = ids.shape[1]
        lengths = inputs["lengths"].clamp(1, steps)  # packing needs 1 ≤ length ≤ T
        x = self.dropout(self.embed(ids))  # (B, T, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)  # (B, T, 2H)
        positions = torch.arange(steps, device=ids.device)
        mask = (positions < lengths.unsqueeze(1)) & present.unsqueeze(1)  # (B, T)
        tokens = self.proj(out) * mask.unsqueeze(-1)  # (B, T, D), zero at pads
        pooled = zero_absent(self.pool(tokens, mask), present)  # (B, D)
        return ModalityOutput(pooled=pooled, present=present, tokens=tokens, token_mask=mask)
