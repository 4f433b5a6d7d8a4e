"""Gather what the HTML report shows from a trained predictor and an evaluation."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossfuse import __version__
from crossfuse.data.media import is_missing, resolve_media
from crossfuse.data.table import Table
from crossfuse.encoders import DEFAULT_ENCODERS
from crossfuse.errors import CellError
from crossfuse.evaluation.metrics import primary_metric
from crossfuse.models.fusion_model import encoder_config_for

if TYPE_CHECKING:
    from crossfuse.api import FusionPredictor

THUMBNAIL = 160  # longest side of example images, pixels
MAX_AUDIO_SECONDS = 10.0  # examples' audio is cut to this length


def report_data(
    predictor: FusionPredictor,
    table: Table | None = None,
    evaluation: dict[str, Any] | None = None,
    *,
    model_dir: str | Path = "",
    examples: int = 6,
) -> dict[str, Any]:
    """The report's data dict (see :func:`crossfuse.report.render_report`).

    Metrics come from ``evaluation`` (on ``table``) when given, else from the
    validation metrics stored with the model; misclassified examples need ``table``.
    """
    cfg, summary = predictor.config_, predictor.fit_summary_
    pre = predictor.preprocessor_
    evaluated = evaluation or predictor.metrics_.get("valid", {})
    label = predictor._labels[0]
    data: dict[str, Any] = {
        "title": f"crossfuse model: {', '.join(predictor._labels)}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_dir": str(model_dir),
        "version": __version__,
        "summary": {
            "label": ", ".join(predictor._labels),
            "problem_type": pre.labels[label].task,
            "fusion": cfg.model.fusion,
            "encoders": {n: _encoder_name(predictor, n) for n in predictor.model_.input_names},
            "rows": {
                "train": summary.get("train_rows", 0),
                "valid": summary.get("valid_rows", 0),
                "test": len(table) if table is not None else (evaluation or {}).get("rows", 0),
            },
            "parameters": sum(p.numel() for p in predictor.model_.parameters()),
            "train_seconds": summary.get("train_seconds", 0.0),
        },
        "schema": _schema_rows(predictor, table),
        "history": summary.get("history", []),
        "monitor": primary_metric(pre.labels[label].task)[0],
        "metrics": evaluated.get("tasks", {}),
    }
    if "ablation" in evaluated:
        data["contributions"] = _contributions(evaluated)
    if "robustness" in evaluated:
        data["robustness"] = evaluated["robustness"]
    if table is not None and examples > 0 and pre.labels[label].task == "classification":
        data["examples"] = misclassified(predictor, table, examples)
    return data


def _encoder_name(predictor: FusionPredictor, name: str) -> str:
    modality = predictor.preprocessor_.inputs[name]
    enc = encoder_config_for(predictor.config_.model, name, modality)
    return enc.name or DEFAULT_ENCODERS[modality]


def _schema_rows(predictor: FusionPredictor, table: Table | None) -> list[dict[str, Any]]:
    schema = predictor.schema_
    rows = []
    for col, modality in schema.columns.items():
        role = "label" if col in schema.labels else ("ignore" if modality == "ignore" else "input")
        missing = (
            int(table.df[col].map(is_missing).sum())
            if table is not None and col in table.df
            else None
        )
        rows.append(
            {
                "column": col,
                "modality": str(modality),
                "role": role,
                "reason": schema.reasons.get(col, ""),
                "missing": missing,
            }
        )
    return rows


def _contributions(evaluated: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for task, metrics in evaluated["tasks"].items():
        metric = "accuracy" if "accuracy" in metrics else "rmse"
        ablation = evaluated["ablation"]
        out[task] = {
            "metric": metric,
            "full": metrics[metric],
            "without": {n: by[task][metric] for n, by in ablation["without"].items()},
            "only": {n: by[task][metric] for n, by in ablation.get("only", {}).items()},
        }
    return out


def misclassified(predictor: FusionPredictor, table: Table, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` wrongly predicted rows, most confident mistakes first, with media."""
    pre = predictor.preprocessor_
    label = predictor._labels[0]
    enc = pre.labels[label]
    probs = predictor.predict_proba(table)
    probs = probs[label] if isinstance(probs, dict) else probs
    predicted = probs.to_numpy().argmax(1)
    truth = table.df[label].map(lambda v: None if is_missing(v) else str(v))
    names = [str(c) for c in enc.classes]
    wrong = [
        i
        for i in range(len(table))
        if truth.iloc[i] is not None and names[predicted[i]] != truth.iloc[i]
    ]
    wrong.sort(key=lambda i: -float(probs.iloc[i, predicted[i]]))
    examples = []
    for i in wrong[:limit]:
        example: dict[str, Any] = {
            "row": i,
            "true": truth.iloc[i],
            "predicted": names[predicted[i]],
            "probability": float(probs.iloc[i, predicted[i]]),
        }
        for col, modality in pre.inputs.items():
            cell = table.df[col].iloc[i] if col in table.df else None
            if modality == "text" and not is_missing(cell):
                example.setdefault("text", {})[col] = str(cell)[:1000]
            elif modality in ("image", "audio"):
                media = (
                    _thumbnail(cell, table.base_dir)
                    if modality == "image"
                    else _clip(cell, table.base_dir)
                )
                if media is not None:
                    example.setdefault(modality, {})[col] = media
        examples.append(example)
    return examples


def _thumbnail(cell: Any, base_dir: Path | None) -> bytes | None:
    from crossfuse.data.image import decode_image

    try:
        source = cell if isinstance(cell, (bytes, np.ndarray)) else resolve_media(cell, base_dir)
        img = decode_image(source, channels=3)
    except CellError:
        return None
    img.thumbnail((THUMBNAIL, THUMBNAIL))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _clip(cell: Any, base_dir: Path | None) -> bytes | None:
    import soundfile as sf

    from crossfuse.data.audio_io import load_audio_cell

    try:
        x, sr = load_audio_cell(cell, base_dir)  # (channels, n)
    except CellError:
        return None
    buf = io.BytesIO()
    sf.write(buf, x[:, : int(MAX_AUDIO_SECONDS * sr)].T, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()
