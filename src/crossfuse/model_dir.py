"""The model directory: what `save` writes and `load` reads (JSON + safetensors, no pickle).

crossfuse.json      format version, library version, schema, preprocessing state,
                    label classes, full config, training-data fingerprint, fit summary
model.safetensors   the weights
metrics.json        validation (and any later evaluation) metrics
tensorboard/        training curves
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from crossfuse import __version__
from crossfuse.errors import ModelDirError

FORMAT_VERSION = 1
META_FILE, WEIGHTS_FILE, METRICS_FILE, TB_DIR = (
    "crossfuse.json",
    "model.safetensors",
    "metrics.json",
    "tensorboard",
)


def fingerprint(df: pd.DataFrame) -> str:
    """A stable hash of a table's contents (column names and cell values)."""
    h = hashlib.sha256()
    h.update("\x1f".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df.astype(str), index=False).values.tobytes())
    return h.hexdigest()[:16]


def write_model_dir(
    path: str | Path,
    *,
    meta: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    metrics: dict[str, Any],
    tensorboard: Path | None = None,
) -> Path:
    """Write a complete model directory (creating it; existing files are replaced)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": FORMAT_VERSION, "crossfuse_version": __version__, **meta}
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    if (
        tensorboard is not None
        and tensorboard.exists()
        and tensorboard.resolve() != (out / TB_DIR).resolve()
    ):
        shutil.copytree(tensorboard, out / TB_DIR, dirs_exist_ok=True)
    return out


def read_model_dir(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict]:
    """Read ``(meta, state_dict, metrics)``; clear errors for anything missing or incompatible."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelDirError(f"model directory {folder} not found")
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise ModelDirError(f"{folder} is not a crossfuse model directory (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{meta_path} is not valid JSON: {e.msg} (line {e.lineno})") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelDirError(
            f"{folder} has model format version {version!r}, but crossfuse {__version__} reads "
            f"version {FORMAT_VERSION}; re-train the model or use the crossfuse version that "
            f"saved it ({meta.get('crossfuse_version', 'unknown')})"
        )
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelDirError(f"{folder} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise ModelDirError(f"{weights} is not a readable safetensors file: {e}") from None
    metrics_path = folder / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return meta, state, metrics
