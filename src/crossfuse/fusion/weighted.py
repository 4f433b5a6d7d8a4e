"""Weighted-average fusion, plus the masking helpers the other simple fusions share.

Every input is projected to ``hidden`` (Linear then GELU) and the projections are
averaged with one weight per input, renormalised over the inputs present in each row.
The weights are either fixed by the user or learned (softmax over logits, equal at
start). A row where no input is present gets a learned "empty" vector.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError
from crossfuse.fusion.base import Fusion, register_fusion


def check_positive_int(what: str, value: object) -> int:
    """Return ``value`` if it is a positive integer, else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def check_rate(what: str, value: object) -> float:
    """Return ``value`` as a float if it is a probability in [0, 1), else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"{what} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_inputs(in_dims: dict[str, int], hidden: int) -> list[str]:
    """Validate ``in_dims`` and ``hidden``; return the input names in sorted order."""
    if not isinstance(in_dims, dict) or not in_dims:
        raise ConfigError(f"a fusion needs at least one input; got in_dims={in_dims!r}")
    for name, width in in_dims.items():
        check_positive_int(f"width of input {name!r}", width)
    check_positive_int("fusion hidden", hidden)
    return sorted(in_dims)


def check_out_dims(out_dims: dict[str, int], what: str) -> list[int]:
    """Validate a decision-level fusion's ``out_dims``; return the widths in task order."""
    if not isinstance(out_dims, dict) or not out_dims:
        raise ConfigError(f"{what} needs at least one task in out_dims, got {out_dims!r}")
    return [check_positive_int(f"logits width of task {t!r}", w) for t, w in out_dims.items()]


def per_input_heads(
    in_dims: dict[str, int], names: list[str], hidden: int, out_dim: int, rate: float
) -> nn.ModuleList:
    """One small MLP per input (``names`` order) mapping its pooled vector to ``out_dim``."""
    return nn.ModuleList(
        nn.Sequential(
            nn.Linear(in_dims[n], hidden), nn.ReLU(), nn.Dropout(rate), nn.Linear(hidden, out_dim)
        )
        for n in names
    )


def present_matrix(outputs: dict[str, ModalityOutput], names: list[str]) -> torch.Tensor:
    """Stack the inputs' ``present`` masks in ``names`` order: (B, M) bool."""
    if set(outputs) != set(names):
        raise ConfigError(f"fusion was built for inputs {names} but got {sorted(outputs)}")
    return torch.stack([outputs[n].present.bool() for n in names], dim=1)


def clean_pooled(output: ModalityOutput) -> torch.Tensor:
    """``pooled`` with absent rows set to 0, so absent values (even NaN) reach no parameter."""
    keep = output.present.bool()[:, None]  # (B, 1)
    return torch.where(keep, output.pooled, torch.zeros_like(output.pooled))  # (B, D)


def renormalise(base: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Per-row weights: ``base`` (M,) zeroed where absent and rescaled to sum to 1.

    Rows with nothing usable (all absent, or only zero-weight inputs present) get all
    zeros; the division is guarded so gradients stay finite there too.
    """
    w = base[None, :] * present.to(base.dtype)  # (B, M)
    total = w.sum(dim=1, keepdim=True)  # (B, 1)
    return w / torch.where(total > 0, total, torch.ones_like(total))


def fill_empty(fused: torch.Tensor, weights: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """Replace rows whose ``weights`` (B, M) are all zero with the vector ``empty`` (D,)."""
    none = (weights > 0).sum(dim=1, keepdim=True) == 0  # (B, 1)
    return torch.where(none, empty.expand_as(fused), fused)  # (B, D)


@register_fusion("weighted")
class WeightedFusion(Fusion):
    """Weighted average of the projected inputs (fixed or learned weights).

    Args:
        in_dims: {input: pooled width}.
        hidden: projection width, also the output width.
        out_dims: {task: logits width}; unused (feature-level fusion).
        weights: {input: weight} naming exactly the inputs, non-negative, not all zero;
            None learns the weights instead.
    """

    fixed: torch.Tensor  # buffer (M,): the user's weights, when they are fixed

    def __init__(
        self,
        *,
        in_dims: dict[str, int],
        hidden: int,
        out_dims: dict[str, int] | None = None,
        weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.names = check_inputs(in_dims, hidden)
        self.out_dim = hidden
        self.learned = weights is None
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dims[n], hidden), nn.GELU()) for n in self.names
        )
        self.empty = nn.Parameter(torch.randn(hidden) * 0.02)
        if weights is None:
            self.logits = nn.Parameter(torch.zeros(len(self.names)))
        else:
            self.register_buffer("fixed", self._check_weights(weights))

    def _check_weights(self, weights: object) -> torch.Tensor:
        if not isinstance(weights, dict) or set(weights) != set(self.names):
            got = sorted(weights) if isinstance(weights, dict) else weights
            raise ConfigError(f"weighted fusion weights must name exactly {self.names}, got {got}")
        values = []
        for name in self.names:
            v = weights[name]
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ConfigError(f"weight of {name!r} must be a finite number, got {v!r}")
            if v < 0:
                raise ConfigError(f"weight of {name!r} must be non-negative, got {v!r}")
            values.append(float(v))
        if sum(values) == 0:
            raise ConfigError("weighted fusion weights are all zero; give at least one > 0")
        return torch.tensor(values)

    def base_weights(self) -> torch.Tensor:
        """The weights before masking, summing to 1: (M,)."""
        if self.learned:
            return torch.softmax(self.logits, dim=0)
        return self.fixed / self.fixed.sum()

    def row_weights(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        """Effective weights per row, renormalised over present inputs: (B, M)."""
        return renormalise(self.base_weights(), present_matrix(outputs, self.names))

    def modality_weights(self, outputs: dict[str, ModalityOutput]) -> dict[str, torch.Tensor]:
        """{input: (B,) effective weight}, 0 where the input is absent."""
        w = self.row_weights(outputs)  # (B, M)
        return {n: w[:, i] for i, n in enumerate(self.names)}

    def project(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        """Project every input (absent rows from zeros): (B, M, hidden)."""
        return torch.stack(
            [p(clean_pooled(outputs[n])) for p, n in zip(self.proj, self.names, strict=True)],
            dim=1,
        )

    def forward(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        w = self.row_weights(outputs)  # (B, M)
        h = self.project(outputs)  # (B, M, H)
        fused = (w[:, :, None] * h).sum(dim=1)  # (B, H)
        return fill_empty(fused, w, self.empty)
