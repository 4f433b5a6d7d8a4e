"""Per-task losses that skip rows without a usable target."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    present: torch.Tensor,
    *,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy over rows whose label is present; 0 (with a graph) when none are."""
    if not bool(present.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(
        logits[present], target[present], weight=class_weights, label_smoothing=label_smoothing
    )


def regression_loss(
    pred: torch.Tensor, target: torch.Tensor, present: torch.Tensor, *, kind: str = "mse"
) -> torch.Tensor:
    """MSE or Huber loss on standardised targets over rows whose target is present."""
    pred = pred.reshape(-1)  # (B,)
    if not bool(present.any()):
        return pred.sum() * 0.0
    fn = F.mse_loss if kind == "mse" else F.huber_loss
    return fn(pred[present], target[present].to(pred.dtype))


def balanced_class_weights(counts: torch.Tensor) -> torch.Tensor:
    """Inverse-frequency weights ``n / (C * count)``, as scikit-learn's "balanced"."""
    counts = counts.to(torch.float32).clamp(min=1.0)
    return counts.sum() / (len(counts) * counts)
