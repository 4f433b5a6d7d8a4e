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
