"""Checking an export against PyTorch, and explaining an export that failed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfuse.data.dataset import Collator
from crossfuse.errors import ConfigError
from crossfuse.export import writers
from crossfuse.export.flat import Batch, FlatFusionModel, TensorSpec, flatten
from crossfuse.export.sample import Item

# (exporter, encoder) → why that combination cannot work, for the error message
KNOWN_LIMITS = {
    ("dynamo", "text-gru"): "torch.export cannot capture its packed bidirectional GRU",
}


def check_agreement(
    flat: FlatFusionModel,
    runner: writers.Runner,
    items: list[Item],
    collate: Collator,
    tolerance: float,
) -> dict[str, Any]:
    """Max abs difference between ``runner`` and PyTorch over the check batches.

    The batches are all check rows at once, each row alone and 64 rows (the rows
    repeated), so the dynamic batch axis and every presence pattern are exercised.
    PyTorch runs as :func:`~crossfuse.models.inference.run_inference` does (inference
    mode, the unmodified encoders).
    """
    n = len(items)
    groups = [items, *([it] for it in items), [items[i % n] for i in range(64)]]
    worst, worst_output, worst_batch = 0.0, "", 0
    for group in groups:
        batch = collate(group)["inputs"]
        with torch.inference_mode():
            reference = flat(*flatten(batch, flat.inputs))
        try:
            got = runner(batch)
        except Exception as e:  # the runtime's own error types
            raise ConfigError(
                f"the exported model fails on a check batch of {len(group)} row(s): "
                f"{type(e).__name__}: {str(e).strip()[:300]}"
            ) from e
        for spec, ref in zip(flat.outputs, reference, strict=True):
            diff = max_abs_diff(ref.numpy(), got[spec.name])
            if diff > worst:
                worst, worst_output, worst_batch = diff, spec.name, len(group)
    return {
        "max_abs_diff": worst,
        "worst_output": worst_output,
        "worst_batch": worst_batch,
        "tolerance": tolerance,
        "passed": worst <= tolerance,
        "rows": n,
        "batch_sizes": sorted({len(g) for g in groups}),
    }


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b|``; NaN where only one side is NaN (or other shapes) counts as inf."""
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return float("inf")
    return float(np.abs(np.where(nan_a, 0.0, a - b)).max())


class _EncoderProbe(nn.Module):
    """One encoder behind the flat interface, to find which encoder an exporter rejects."""

    def __init__(self, encoder: nn.Module, inputs: list[TensorSpec]) -> None:
        super().__init__()
        self.encoder = encoder
        self.inputs = inputs

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        batch = {s.key: t for s, t in zip(self.inputs, tensors, strict=True)}
        return self.encoder(batch).pooled


def failure_message(
    net: nn.Module,
    sample: Batch,
    specs: list[TensorSpec],
    encoders: dict[str, str],
    tmp: Path,
    error: Exception,
    *,
    format: str,
    exporter: str,
    opset: int,
) -> str:
    """Why the export failed: the encoders that fail on their own, else the fusion/heads.

    Each encoder is exported alone (into ``tmp``) to find the culprits.
    """
    onnx = format == "onnx"
    what = f"ONNX ({exporter} exporter)" if onnx else "TorchScript"
    root: BaseException = error
    while root.__cause__ is not None:  # torch.onnx wraps the real error
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip()
    reason = f"{type(root).__name__}: {(text.splitlines() or [''])[0][:300]}"
    options = {"format": format, "exporter": exporter, "opset": opset}
    culprits = []
    for name, encoder in net.encoders.items():
        sub = [s for s in specs if s.input == name]
        probe = _EncoderProbe(encoder, sub)
        try:
            writers.write_file(probe, sample, sub, ["pooled"], tmp / "probe", **options)
        except Exception:
            why = KNOWN_LIMITS.get((exporter if onnx else "torchscript", encoders[name]))
            culprits.append(
                f"input {name!r} (encoder {encoders[name]!r}{': ' + why if why else ''})"
            )
    hint = " (try --exporter torchscript)" if onnx and exporter == "dynamo" else ""
    if culprits:
        return f"{what} export cannot handle {', '.join(culprits)}{hint}; {reason}"
    return f"{what} export failed in the fusion or heads{hint}; {reason}"
