"""Report sections about the model and its scores: summary, schema, training, confusion
matrix and per-class scores.

Each builder takes the whole report data dict and returns the section's inner HTML; a
builder whose data is absent returns a one-line note instead, so a partial report
still renders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crossfuse.errors import ConfigError
from crossfuse.report import plots
from crossfuse.report.html import esc, facts, figure, fmt, note, stats, table

NOTES = {
    "summary": "no model summary recorded: the model directory has no training summary",
    "schema": "no schema recorded: run `crossfuse inspect TABLE` to see how columns are used",
    "training": "no training history recorded for this model",
    "metrics": "no evaluation metrics: run `crossfuse evaluate MODEL --data TABLE`",
    "contributions": (
        "no modality contributions: run `crossfuse evaluate MODEL --data TABLE --ablate`"
    ),
    "robustness": (
        "no robustness evaluation: run `crossfuse evaluate MODEL --data TABLE --robustness`"
    ),
    "examples": "no misclassified examples: they need a labelled table (`--data`) and a classifier",
}
CLASSIFICATION_KEYS = ("accuracy", "balanced_accuracy", "f1_macro", "log_loss", "n")
REGRESSION_KEYS = ("rmse", "mae", "r2", "pearson", "n")
_REGRESSION_TABLE = ("mse", "rmse", "mae", "r2", "pearson", "n")


def is_classification(task_metrics: Mapping[str, Any]) -> bool:
    """Whether a task's metric dict is a classification one (else regression)."""
    return any(k in task_metrics for k in ("accuracy", "per_class", "confusion_matrix"))


def task_metrics(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The ``metrics`` dict checked to map task name → metric dict (empty when absent)."""
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, Mapping) or not all(
        isinstance(m, Mapping) for m in metrics.values()
    ):
        raise ConfigError("report data 'metrics' must map each task name to a dict of metrics")
    return {str(k): v for k, v in metrics.items()}


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(float(seconds), 60.0)
    if minutes < 1:
        return f"{secs:.1f} s"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs:.0f} s"


def _task_heading(task: str, many: bool) -> str:
    return f"<h3>Task {esc(task)}</h3>" if many else ""


def summary(data: Mapping[str, Any]) -> str:
    """Model facts (label, fusion, encoders, rows, parameters) and headline metrics."""
    info = data.get("summary") or {}
    parts = []
    if info:
        encoders = info.get("encoders") or {}
        rows = info.get("rows") or {}
        pairs = [
            ("label", info.get("label")),
            ("problem type", info.get("problem_type")),
            ("fusion", info.get("fusion")),
            ("encoders", ", ".join(f"{k} → {v}" for k, v in encoders.items()) or None),
            ("rows", " · ".join(f"{k} {fmt(v)}" for k, v in rows.items()) or None),
            ("parameters", info.get("parameters")),
            ("training time", _duration(info.get("train_seconds"))),
        ]
        parts.append(facts([(k, v) for k, v in pairs if v is not None]))
    else:
        parts.append(note(NOTES["summary"]))
    metrics = task_metrics(data)
    for task, m in metrics.items():
        keys = CLASSIFICATION_KEYS if is_classification(m) else REGRESSION_KEYS
        tiles = [("rows scored" if k == "n" else k, m[k]) for k in keys if m.get(k) is not None]
        parts.append(_task_heading(task, len(metrics) > 1) + stats(tiles))
    if not metrics:
        parts.append(note(NOTES["metrics"]))
    return "".join(parts)


def schema(data: Mapping[str, Any]) -> str:
    """A table of every column: modality, role, why, and how many cells are missing."""
    columns = data.get("schema")
    if not columns:
        return note(NOTES["schema"])
    keys = ("column", "modality", "role", "reason", "missing")
    return table(list(keys), [[c.get(k) for k in keys] for c in columns])


def training(data: Mapping[str, Any]) -> str:
    """Loss curves and the validation metric per epoch, with the best epoch named."""
    history = data.get("history")
    if not history:
        return note(NOTES["training"])
    monitor = str(data.get("monitor") or "metric")
    parts = [figure(plots.training_curves(history, monitor), f"loss and {monitor} per epoch")]
    scored = [h for h in history if h.get("valid_metric") is not None]
    if scored:
        pick = min if monitor.lower() in plots.LOWER_IS_BETTER else max
        best = pick(scored, key=lambda h: float(h["valid_metric"]))
        text = (
            f"{len(history)} epochs; best validation {monitor} {fmt(best['valid_metric'])} "
            f"at epoch {best['epoch']}."
        )
        parts.insert(0, f"<p>{esc(text)}</p>")
    return "".join(parts)


def _classes(task: str, m: Mapping[str, Any]) -> list[str]:
    classes = [str(c) for c in (m.get("per_class") or {})]
    matrix = m.get("confusion_matrix")
    if matrix is not None:
        size = len(matrix)
        if any(len(row) != size for row in matrix) or (classes and len(classes) != size):
            raise ConfigError(
                f"report data metrics[{task!r}]['confusion_matrix'] must be square with one "
                f"row per class ({len(classes)} classes in per_class)"
            )
        classes = classes or [str(i) for i in range(size)]
    return classes


def _regression_note(task: str, what: str) -> str:
    return note(f"task {task!r} is a regression task: no {what}")


def confusion(data: Mapping[str, Any]) -> str:
    """Heatmap per classification task; a metrics table for each regression task."""
    metrics = task_metrics(data)
    if not metrics:
        return note(NOTES["metrics"])
    parts = []
    for task, m in metrics.items():
        parts.append(_task_heading(task, len(metrics) > 1))
        if not is_classification(m):
            parts.append(_regression_note(task, "confusion matrix; its metrics:"))
            keys = [k for k in _REGRESSION_TABLE if k in m]
            parts.append(table(["metric", "value"], [[k, m[k]] for k in keys]))
        elif m.get("confusion_matrix") is None:
            parts.append(note(f"no confusion matrix recorded for task {task!r}"))
        else:
            classes = _classes(task, m)
            png = plots.confusion_heatmap(m["confusion_matrix"], classes)
            parts.append(figure(png, f"confusion matrix of {task}"))
    return "".join(parts)


def per_class(data: Mapping[str, Any]) -> str:
    """Precision / recall / F1 bars and table per class, for each classification task."""
    metrics = task_metrics(data)
    if not metrics:
        return note(NOTES["metrics"])
    parts = []
    for task, m in metrics.items():
        parts.append(_task_heading(task, len(metrics) > 1))
        scores = m.get("per_class")
        if not is_classification(m):
            parts.append(_regression_note(task, "per-class scores"))
            continue
        if not scores:
            parts.append(note(f"no per-class scores recorded for task {task!r}"))
            continue
        parts.append(figure(plots.per_class_bars(scores), f"per-class scores of {task}"))
        keys = ("precision", "recall", "f1", "support")
        rows: list[list[Any]] = [[str(c), *(s.get(k) for k in keys)] for c, s in scores.items()]
        support = [s.get("support") for s in scores.values()]
        total = sum(support) if all(isinstance(v, int) for v in support) else None
        macro = ("precision_macro", "recall_macro", "f1_macro")
        if any(m.get(k) is not None for k in macro):
            rows.append(["macro average", *(m.get(k) for k in macro), total])
        if m.get("f1_weighted") is not None:
            rows.append(["weighted average", None, None, m["f1_weighted"], total])
        parts.append(table(["class", *keys], rows))
    return "".join(parts)
