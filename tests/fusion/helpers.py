"""Inputs and a tiny training loop shared by the fusion tests."""

from __future__ import annotations

import torch
from torch import nn

from crossfuse.encoders.base import ModalityOutput

WIDTHS = {"text": 8, "image": 12, "audio": 6}
PRESENT = {
    "audio": [True, True, False, False, True, False],
    "image": [True, False, True, False, False, False],
    "text": [True, True, True, False, False, False],
}  # rows 3 and 5: nothing present; row 4: audio only


def make_outputs(
    widths: dict[str, int], present: dict[str, list[bool]], seed: int = 0
) -> dict[str, ModalityOutput]:
    g = torch.Generator().manual_seed(seed)
    return {
        n: ModalityOutput(torch.randn(len(present[n]), w, generator=g), torch.tensor(present[n]))
        for n, w in widths.items()
    }


def with_pooled(
    outputs: dict[str, ModalityOutput], name: str, rows: torch.Tensor, value: float
) -> dict[str, ModalityOutput]:
    """A copy of ``outputs`` where ``name``'s pooled values in ``rows`` are set to ``value``."""
    pooled = outputs[name].pooled.clone()
    pooled[rows] = value
    return {**outputs, name: ModalityOutput(pooled, outputs[name].present)}


class WithHead(nn.Module):
    """A feature-level fusion followed by a linear head, so it outputs logits."""

    def __init__(self, fusion: nn.Module, classes: int = 2) -> None:
        super().__init__()
        self.fusion, self.head = fusion, nn.Linear(fusion.out_dim, classes)

    def forward(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        return self.head(self.fusion(outputs))


def fit_accuracy(model: nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor) -> float:
    """Train ``model`` (inputs → logits) on the first half; accuracy on the second half."""
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    n = len(y) // 2
    ones = torch.ones(n, dtype=torch.bool)
    train = {k: ModalityOutput(v[:n], ones) for k, v in x.items()}
    test = {k: ModalityOutput(v[n:], ones) for k, v in x.items()}
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(train), y[:n]).backward()
        opt.step()
    with torch.no_grad():
        return (model(test).argmax(1) == y[n:]).float().mean().item()


def xor_inputs(n: int = 512, seed: int = 1) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Inputs "a" (width 4) and "b" (width 6), each holding one random ±1 bit in column 0
    plus noise; the label is the XOR of the bits, so neither input alone says anything."""
    g = torch.Generator().manual_seed(seed)
    a, b = (torch.randint(0, 2, (n,), generator=g) for _ in range(2))
    x = {"a": 0.3 * torch.randn(n, 4, generator=g), "b": 0.3 * torch.randn(n, 6, generator=g)}
    x["a"][:, 0], x["b"][:, 0] = 2.0 * a - 1, 2.0 * b - 1
    return x, a ^ b


def with_grad(
    outputs: dict[str, ModalityOutput], absent_value: float = float("nan")
) -> dict[str, ModalityOutput]:
    """A copy whose pooled tensors require grad and hold ``absent_value`` in absent rows."""
    copy = {}
    for n, o in outputs.items():
        pooled = o.pooled.masked_fill(~o.present[:, None], absent_value).requires_grad_()
        copy[n] = ModalityOutput(pooled, o.present, o.tokens, o.token_mask)
    return copy


def one_row(outputs: dict[str, ModalityOutput], i: int) -> dict[str, ModalityOutput]:
    """Row ``i`` alone, as a batch of one (tokens and token masks included)."""

    def cut(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[i : i + 1]

    return {
        n: ModalityOutput(
            o.pooled[i : i + 1], o.present[i : i + 1], cut(o.tokens), cut(o.token_mask)
        )
        for n, o in outputs.items()
    }
