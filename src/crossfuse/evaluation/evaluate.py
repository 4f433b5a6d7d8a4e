"""Evaluating a trained model on a labelled table, optionally with modality ablation.

The pieces here (metrics of an inference, the ablation variants and their summary, the
problem tally) are shared by :func:`evaluate_model` and by
:func:`crossfuse.evaluation.streaming.evaluate_stream`, which evaluates a table read in
row chunks; ``evaluate_model`` is that stream over a single chunk.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.problems import Problem, _order
from crossfuse.data.table import Table
from crossfuse.evaluation.metrics import classification_metrics, regression_metrics
from crossfuse.models.fusion_model import FusionModel
from crossfuse.models.inference import Inference, KeepFn

SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "f1_macro", "log_loss", "rmse", "mae", "r2")
MAX_EXAMPLES = 20  # unusable-cell messages kept in result["problems"]["examples"]
Variant = tuple[str, str]  # ("without" | "only", input name)


def metrics_from_inference(inf: Inference, pre: Preprocessor) -> dict[str, dict[str, Any]]:
    """Metrics per task over the rows that have a usable label, in the label's own units."""
    result = {}
    for col, enc in pre.labels.items():
        mask = inf.target_present[col]
        scores, target = inf.scores[col][mask], inf.targets[col][mask]
        if enc.task == "classification":
            result[col] = classification_metrics(
                scores, target.long(), [str(c) for c in enc.classes]
            )
        else:
            result[col] = regression_metrics(
                torch.as_tensor(enc.unscale(scores.numpy())),
                torch.as_tensor(enc.unscale(target.numpy())),
            )
    return result


def evaluate_model(
    model: FusionModel,
    pre: Preprocessor,
    table: Table,
    *,
    ablate: bool = False,
    batch_size: int = 64,
    strict: bool = False,
    cached: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``table``.

    With ``ablate=True`` the model is also scored with every input removed in turn
    (masked absent, as if that modality were missing in every row) and with each
    input alone, so each modality's contribution can be read off. ``cached`` gives
    inputs whose features are read from the embedding cache (as in training).
    """
    from crossfuse.evaluation.streaming import evaluate_stream  # it builds on this module

    return evaluate_stream(
        model, pre, [table], ablate=ablate, batch_size=batch_size, strict=strict, cached=cached
    )


def ablation_variants(names: Sequence[str]) -> dict[Variant, KeepFn]:
    """Presence-mask functions, per input: that input removed, and that input alone.

    "only" is left out for a model with a single input (it would equal the full model).
    """
    variants: dict[Variant, KeepFn] = {}
    for name in names:
        variants["without", name] = _hide([name])
        if len(names) > 1:
            variants["only", name] = _hide([m for m in names if m != name])
    return variants


def _hide(hidden: list[str]) -> KeepFn:
    """A keep function that marks the ``hidden`` inputs absent in every row."""

    def keep(present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: torch.zeros_like(present[n]) for n in hidden}

    return keep


def ablation_summary(
    metrics: dict[Variant, dict[str, dict[str, Any]]], full_metrics: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """``{"without"|"only": {input: {task: headline metrics + delta vs the full model}}}``."""
    out: dict[str, Any] = {"without": {}, "only": {}}
    for (kind, name), by_task in metrics.items():
        out[kind][name] = {task: _summary(m, full_metrics[task]) for task, m in by_task.items()}
    return out


def presence_fractions(inf: Inference) -> dict[str, float]:
    """Per input, the fraction of rows where it was present."""
    return {n: float(p.float().mean()) for n, p in inf.present.items()}


def _summary(metrics: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    summary = {k: metrics[k] for k in SUMMARY_KEYS if metrics.get(k) is not None}
    summary["delta"] = {k: summary[k] - full[k] for k in summary if full.get(k) is not None}
    return summary


class ProblemTally:
    """Counts of unusable cells per column, and the first few messages, over row chunks.

    Holds counts and at most :data:`MAX_EXAMPLES` messages, not the problems themselves,
    so a table with millions of empty cells costs no memory here.
    """

    def __init__(self) -> None:
        self._by: Counter = Counter()  # (column, kind) → count
        self._examples: list[tuple[tuple, str]] = []  # (sort key, message)

    def add(self, problems: Iterable[Problem], *, row_offset: int = 0) -> None:
        """Tally ``problems`` of a chunk whose first row is row ``row_offset`` of the table."""
        new = []
        for p in problems:
            if row_offset and p.row is not None:
                p = dataclasses.replace(p, row=p.row + row_offset)
            self._by[p.column, p.kind] += 1
            if p.kind != "missing":
                new.append((_order(p), str(p)))
        if new:
            merged = sorted(self._examples + new, key=lambda item: item[0])
            self._examples = merged[:MAX_EXAMPLES]

    def summary(self) -> dict[str, Any]:
        """``{"missing": {column: n}, "unusable": {column: n}, "examples": [message]}``."""
        by = self._by
        return {
            "missing": {c: n for (c, k), n in by.items() if k == "missing"},
            "unusable": {c: n for (c, k), n in by.items() if k not in ("missing",)},
            "examples": [message for _, message in self._examples],
        }
