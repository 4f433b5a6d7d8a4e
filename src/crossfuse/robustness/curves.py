"""Robustness curves: the metric as one modality is corrupted in a growing share of rows.

For every input and every corruption of its modality (plus ``missing``: the input
absent), rows are corrupted in a fixed random order, so the rows corrupted at level
0.3 include those corrupted at 0.2. Every row is decoded and scored clean once and
corrupted once per corruption; each level mixes the two sets of row outputs.

Summaries: ``auc`` is the area under the metric-vs-level curve divided by the level
range (the mean metric over the levels: relative robustness, on the metric's scale).
``effective`` (when a reference, usually late fusion, is given) is how much less the
model loses than the reference: ``(auc - clean) - (auc_ref - clean_ref)``; positive
means more robust than the reference, independent of clean accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.preprocessor import TABULAR, Preprocessor
from crossfuse.data.table import Table
from crossfuse.errors import ConfigError
from crossfuse.evaluation.evaluate import metrics_from_inference
from crossfuse.evaluation.metrics import primary_metric
from crossfuse.models.fusion_model import FusionModel
from crossfuse.models.inference import Inference, run_inference

LEVELS = tuple(round(0.1 * i, 1) for i in range(10))  # 0.0 … 0.9
MISSING = "missing"
MISSING_DESCRIPTION = "the modality is absent (as if the file or text were not there)"
Progress = Callable[[str], None]


def corruptions_for(
    name: str, modality: str, chosen: dict[str, Sequence[str]] | None = None
) -> list[str]:
    """Corruptions to run for input ``name``: ``chosen[name]`` or ``chosen[modality]``,
    else ``missing`` plus every corruption registered for the modality."""
    from crossfuse.robustness.corruptions import corruption_names, get_corruption

    if chosen and (name in chosen or modality in chosen):
        names = list(chosen.get(name) or chosen[modality])
        for c in names:
            if c != MISSING:
                get_corruption(c, modality)  # ConfigError listing the valid names
        return names
    return [MISSING, *corruption_names(modality)]


def robustness_curves(
    model: FusionModel,
    pre: Preprocessor,
    table: Table,
    *,
    levels: Sequence[float] = LEVELS,
    corruptions: dict[str, Sequence[str]] | None = None,
    seed: int = 0,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Metric of the first task at every noise level, per input and corruption."""
    levels = _check_levels(levels)
    task = model.tasks[0]
    metric, _ = primary_metric(task.task)
    dataset = FusionDataset(table, pre, labels=True)
    clean = [dataset[i] for i in range(len(dataset))]
    n = len(clean)
    rank = np.empty(n, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(n)] = np.arange(n)

    def infer(items: list[dict], hide: str | None = None) -> Inference:
        batches = []
        for start in range(0, n, batch_size):
            batch = Collator(pre)(items[start : start + batch_size])
            if hide is not None:
                batch["keep"] = {hide: torch.zeros(len(batch["index"]), dtype=torch.bool)}
            batches.append(batch)
        return run_inference(model, pre, table, labels=True, loader=batches)

    def score(inf: Inference) -> float:
        return float(metrics_from_inference(inf, pre)[task.name][metric])

    # Rows are scored independently (eval mode), so the model's output for a mix of
    # clean and corrupted rows is the row-wise mix of its outputs on each: one pass per
    # corruption instead of one per level.
    base = infer(clean)
    clean_score = score(base)
    modalities = pre.inputs
    curves: dict[str, dict[str, list[float]]] = {}
    descriptions: dict[str, str] = {MISSING: MISSING_DESCRIPTION}
    for name in model.input_names:
        modality = modalities[name]
        curves[name] = {}
        for corruption in corruptions_for(name, modality, corruptions):
            if progress is not None:
                progress(f"{name}: {corruption}")
            if corruption == MISSING:
                worst = infer(clean, hide=name)
            else:
                descriptions[corruption] = _description(corruption, modality)
                corrupted = _corrupted_inputs(pre, table, name, modality, corruption, seed)
                worst = infer([_swap(it, name, corrupted[i]) for i, it in enumerate(clean)])
            curves[name][corruption] = [
                score(_mix(base, worst, torch.from_numpy(rank < round(level * n))))
                for level in levels
            ]
    return summarise(
        {
            "task": task.name,
            "metric": metric,
            "levels": list(levels),
            "clean": clean_score,
            "rows": n,
            "seed": seed,
            "curves": curves,
            "descriptions": descriptions,
        }
    )


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Add ``auc`` per input and corruption, and per input averaged over corruptions."""
    levels = np.asarray(result["levels"], dtype=np.float64)
    span = levels[-1] - levels[0]
    result["auc"] = {
        name: {c: float(np.trapezoid(curve, levels) / span) for c, curve in by.items()}
        for name, by in result["curves"].items()
    }
    result["auc_mean"] = {
        name: float(np.mean(list(by.values()))) for name, by in result["auc"].items() if by
    }
    return result


def add_reference(result: dict[str, Any], reference: dict[str, Any], name: str) -> dict[str, Any]:
    """Attach a reference model's curves (e.g. late fusion) and the effective robustness."""
    if reference["levels"] != result["levels"] or reference["metric"] != result["metric"]:
        raise ConfigError("the reference robustness curves use other levels or another metric")
    result["reference"] = {"name": name, "curves": reference["curves"], "clean": reference["clean"]}
    result["effective"] = {
        inp: {
            c: (auc - result["clean"]) - (reference["auc"][inp][c] - reference["clean"])
            for c, auc in by.items()
            if c in reference["auc"].get(inp, {})
        }
        for inp, by in result["auc"].items()
    }
    return result


def _check_levels(levels: Sequence[float]) -> list[float]:
    out = [float(x) for x in levels]
    if len(out) < 2 or any(not 0.0 <= x <= 1.0 for x in out) or out != sorted(set(out)):
        raise ConfigError(
            f"robustness levels must be at least two increasing fractions in [0, 1], got {levels!r}"
        )
    return out


def _description(corruption: str, modality: str) -> str:
    from crossfuse.robustness.corruptions import get_corruption

    return get_corruption(corruption, modality).description


def _corrupted_inputs(
    pre: Preprocessor, table: Table, name: str, modality: str, corruption: str, seed: int
) -> list[Any]:
    """Every row's ``name`` input, processed from its corrupted cell(s)."""
    from crossfuse.robustness.corruptions import corrupt_column

    columns = pre.tabular.columns if name == TABULAR else [name]
    df = table.df.copy()
    everyone = np.ones(len(df), dtype=bool)
    for col in columns:
        cells = df[col].to_numpy(dtype=object)
        new = corrupt_column(
            cells, corruption, modality, everyone, base_dir=table.base_dir, seed=seed
        )
        df[col] = new if isinstance(new, np.ndarray) else _object_column(new)
    dataset = FusionDataset(dataclasses.replace(table, df=df), pre, labels=False)
    return [dataset.process_input(i, name) for i in range(len(df))]


def _object_column(values: list[Any]) -> np.ndarray:
    """Cells as a 1-D object array (arrays and tuples stay single cells)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _mix(clean: Inference, worst: Inference, chosen: torch.Tensor) -> Inference:
    """Scores of ``worst`` in the ``chosen`` rows, of ``clean`` elsewhere."""
    scores = {}
    for task, value in clean.scores.items():
        rows = chosen.reshape(-1, *([1] * (value.dim() - 1)))
        scores[task] = torch.where(rows, worst.scores[task], value)
    return dataclasses.replace(clean, scores=scores)


def _swap(item: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    return {**item, "inputs": {**item["inputs"], name: value}}
