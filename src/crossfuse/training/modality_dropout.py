"""Modality dropout: hide present inputs at random so the model learns to cope without them."""

from __future__ import annotations

import torch


def drop_modalities(
    present: dict[str, torch.Tensor], p: float, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Return new presence masks with each present input hidden with probability ``p``.

    A row never loses its last present input: where every present input of a row would
    be hidden, the row keeps its original masks.
    """
    if p <= 0 or not present:
        return present
    names = sorted(present)
    stacked = torch.stack([present[n] for n in names], dim=1)  # (B, M)
    drop = torch.rand(stacked.shape, generator=generator, device=stacked.device) < p
    kept = stacked & ~drop
    emptied = ~kept.any(dim=1) & stacked.any(dim=1)  # (B,)
    kept[emptied] = stacked[emptied]
    return {n: kept[:, i] for i, n in enumerate(names)}
