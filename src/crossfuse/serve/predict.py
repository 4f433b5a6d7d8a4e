"""Scoring rows of validated inputs with a loaded model, formatted for JSON responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from crossfuse.api import FusionPredictor
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.problems import Problem
from crossfuse.data.table import read_table
from crossfuse.models.inference import run_inference

Row = dict[str, Any]  # column → str | float | bytes (media file content) | None


def input_columns(pre: Preprocessor) -> dict[str, str]:
    """Every input column the model reads and its modality, in the model's order."""
    columns = {col: str(pre.schema.columns[col]) for col in pre.columns}
    if pre.tabular is not None:
        columns.update({col: "numeric" for col in pre.tabular.numeric})
        columns.update({col: "categorical" for col in pre.tabular.categorical})
    return columns


def _json_value(value: Any) -> Any:
    """numpy scalars → Python scalars (labels may be numpy ints or floats)."""
    return value.item() if isinstance(value, np.generic) else value


def _problem_text(problem: Problem) -> str:
    reason = "not given" if problem.reason == "empty cell" else problem.reason
    return f"{problem.column}: {reason}" if problem.column else reason


class RowScorer:
    """Callable that scores a list of rows in one forward pass.

    Media cells are raw file bytes, so nothing is read from the server's disk. Each
    result has ``label`` (the first task's prediction), ``predictions`` per task,
    ``present`` per model input and ``problems`` (cells that could not be used).
    """

    def __init__(self, predictor: FusionPredictor) -> None:
        self.predictor = predictor
        self.pre: Preprocessor = predictor.preprocessor_
        self.columns = input_columns(self.pre)

    def __call__(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        if not rows:
            return []
        frame = pd.DataFrame(
            {col: pd.Series([row.get(col) for row in rows], dtype=object) for col in self.columns}
        )
        inf = run_inference(
            self.predictor.model_,
            self.pre,
            read_table(frame),
            labels=False,
            batch_size=max(len(rows), 1),
        )
        problems: dict[int, list[str]] = {}
        for p in inf.problems:
            problems.setdefault(p.row if p.row is not None else -1, []).append(_problem_text(p))
        results = []
        for i in range(len(rows)):
            predictions: dict[str, Any] = {}
            for task, enc in self.pre.labels.items():
                scores = inf.scores[task][i]
                if enc.task == "classification":
                    probs = scores.numpy().astype(np.float64)  # (C,)
                    predictions[task] = {
                        "label": _json_value(enc.decode(int(probs.argmax()))),
                        "probabilities": {
                            str(c): round(float(p), 6)
                            for c, p in zip(enc.classes, probs, strict=True)
                        },
                    }
                else:
                    value = enc.unscale(np.asarray([float(scores)], dtype=np.float64))[0]
                    predictions[task] = {"value": float(value)}
            first = next(iter(predictions.values()))
            results.append(
                {
                    "label": first.get("label", first.get("value")),
                    "predictions": predictions,
                    "present": {n: bool(v[i]) for n, v in inf.present.items()},
                    "problems": problems.get(i, []) + problems.get(-1, []),
                }
            )
        return results
