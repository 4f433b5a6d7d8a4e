"""Evaluation metrics: pure functions returning JSON-serialisable dicts."""

from crossfuse.evaluation.metrics import (
    classification_metrics,
    primary_metric,
    regression_metrics,
)

__all__ = ["classification_metrics", "primary_metric", "regression_metrics"]
