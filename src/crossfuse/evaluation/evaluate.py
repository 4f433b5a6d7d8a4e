"""Evaluating a trained model on a labelled table, optionally with modality ablation."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.utils.data import DataLoader

from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.table import Table
from crossfuse.evaluation.metrics import classification_metrics, regression_metrics
from crossfuse.models.fusion_model import FusionModel
from crossfuse.models.inference import Inference, KeepFn, run_inference

SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "f1_macro", "log_loss", "rmse", "mae", "r2")


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
) -> dict[str, Any]:
    """Metrics of ``model`` on ``table``.

    With ``ablate=True`` the model is also scored with every input removed in turn
    (masked absent, as if that modality were missing in every row) and with each
    input alone, so each modality's contribution can be read off.
    """
    dataset = FusionDataset(table, pre, labels=True, strict=strict)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=Collator(pre))
    batches = list(loader) if ablate else loader  # decode once, reuse for every ablation
    full = run_inference(model, pre, table, labels=True, loader=batches)
    result: dict[str, Any] = {
        "rows": len(table),
        "tasks": metrics_from_inference(full, pre),
        "inputs_present": {n: float(p.float().mean()) for n, p in full.present.items()},
        "problems": _problem_counts(full),
    }
    if ablate:
        result["ablation"] = _ablation(model, pre, table, batches, result["tasks"])
    return result


def _ablation(model, pre, table, batches, full_metrics) -> dict[str, Any]:
    names = model.input_names
    out: dict[str, Any] = {"without": {}, "only": {}}
    for name in names:
        variants: dict[str, KeepFn] = {
            "without": lambda present, n=name: {n: torch.zeros_like(present[n])},
            "only": lambda present, n=name: {
                m: torch.zeros_like(present[m]) for m in names if m != n
            },
        }
        if len(names) == 1:
            variants.pop("only")
        for kind, keep in variants.items():
            inf = run_inference(model, pre, table, labels=True, loader=batches, keep=keep)
            metrics = metrics_from_inference(inf, pre)
            out[kind][name] = {task: _summary(m, full_metrics[task]) for task, m in metrics.items()}
    return out


def _summary(metrics: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    summary = {k: metrics[k] for k in SUMMARY_KEYS if metrics.get(k) is not None}
    summary["delta"] = {k: summary[k] - full[k] for k in summary if full.get(k) is not None}
    return summary


def _problem_counts(inf: Inference) -> dict[str, Any]:
    by = Counter((p.column, p.kind) for p in inf.problems)
    return {
        "missing": {c: n for (c, k), n in by.items() if k == "missing"},
        "unusable": {c: n for (c, k), n in by.items() if k not in ("missing",)},
        "examples": [str(p) for p in list(inf.problems) if p.kind != "missing"][:20],
    }
