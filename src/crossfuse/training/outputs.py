"""Collecting model outputs over a data set and turning them into metrics."""

from __future__ import annotations

import torch

from crossfuse.evaluation.metrics import classification_metrics, primary_metric, regression_metrics


def task_scores(task: str, logits: torch.Tensor) -> torch.Tensor:
    """Probabilities (B, C) for classification; predictions (B,) for regression."""
    return logits.softmax(dim=-1) if task == "classification" else logits.reshape(-1)


def task_metrics(
    task: str,
    scores: torch.Tensor,
    targets: torch.Tensor,
    classes: list | None = None,
    scale: tuple[float, float] = (0.0, 1.0),
) -> dict:
    """Full metrics of one task; regression values are returned to the label's units."""
    if task == "classification":
        n_classes = scores.shape[1]
        return classification_metrics(scores, targets.long(), classes or list(range(n_classes)))
    mean, std = scale
    return regression_metrics(scores * std + mean, targets.float() * std + mean)


def validation_metrics(
    tasks, outputs: dict[str, tuple[torch.Tensor, torch.Tensor]], scales: dict
) -> dict[str, float]:
    """Flat ``val_<task>_<metric>`` values plus ``val_score`` (the first task's primary metric,
    negated when lower is better so that higher is always better).

    ``outputs`` holds, per task, the scores and targets of the rows with a label."""
    values: dict[str, float] = {}
    for i, t in enumerate(tasks):
        scores, targets = outputs[t.name]
        if len(targets) == 0:
            continue
        metrics = task_metrics(t.task, scores, targets, scale=scales.get(t.name, (0.0, 1.0)))
        name, mode = primary_metric(t.task)
        for key in ("accuracy", "f1_macro", "log_loss", "rmse", "mae", "r2"):
            if key in metrics and metrics[key] is not None:
                values[f"val_{t.name}_{key}"] = float(metrics[key])
        if i == 0:
            values["val_score"] = float(metrics[name]) * (1.0 if mode == "max" else -1.0)
    return values
