"""Writing a flat module to ONNX or TorchScript, and running the written file back.

Two ONNX exporters are available. ``torchscript`` (the default) is torch's tracing
exporter (``dynamo=False``): it handles the packed bidirectional GRU of ``text-gru``
(ONNX GRU with ``sequence_lens``), convolutions and attention, with dynamic axes.
``dynamo`` (``torch.export``) is the newer one; it cannot export packed sequences, so
models with ``text-gru`` need the default.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crossfuse.export.flat import Batch, TensorSpec, flatten, traceable_encoders
from crossfuse.export.onnx_predictor import OnnxSession

Runner = Callable[[Batch], dict[str, np.ndarray]]  # collated batch → output name → array

DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
OPSET_RANGE = {"torchscript": (9, 20), "dynamo": (18, 23)}


def write_file(
    module: nn.Module,
    sample: Batch,
    specs: list[TensorSpec],
    outputs: list[str],
    path: Path,
    *,
    format: str,
    exporter: str,
    opset: int,
) -> None:
    """Trace ``module`` on the collated ``sample`` and write it in ``format`` to ``path``.

    The encoders run in their trace-friendly form meanwhile (see
    :func:`~crossfuse.export.flat.traceable_encoders`).
    """
    args = flatten(sample, specs)
    with traceable_encoders():
        if format == "onnx":
            write_onnx(module, args, path, specs, outputs, exporter=exporter, opset=opset)
        else:
            write_torchscript(module, args, path)


def write_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    inputs: list[TensorSpec],
    output_names: list[str],
    *,
    exporter: str,
    opset: int,
) -> None:
    """Export ``module`` (called as ``module(*args)``) to ``path`` with dynamic axes."""
    names = [s.name for s in inputs]
    # Not under no_grad: there nn.MultiheadAttention takes its fused fast path, an op
    # ONNX has no translation for. The check compares with that fast path.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the check decides
        if exporter == "dynamo":
            dims: dict[str, torch.export.Dim] = {}

            def dim(label: str) -> torch.export.Dim:
                return dims.setdefault(label, torch.export.Dim(re.sub(r"\W", "_", label)))

            shapes = tuple({i: dim(d) for i, d in s.dynamic_axes.items()} for s in inputs)
            with _quiet():
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    input_names=names,
                    output_names=output_names,
                    opset_version=opset,
                    dynamo=True,
                    dynamic_shapes=(shapes,),  # forward(*tensors): one tuple of shapes
                    external_data=False,
                    verbose=False,
                )
        else:
            axes = {s.name: s.dynamic_axes for s in inputs}
            axes.update({n: {0: "batch"} for n in output_names})
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=names,
                output_names=output_names,
                opset_version=opset,
                dynamo=False,
                dynamic_axes=axes,
            )


@contextlib.contextmanager
def _quiet():
    """Hide the dynamo exporter's progress prints and log lines (errors still raise)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def write_torchscript(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path) -> None:
    """Trace ``module`` and save it with ``torch.jit.save`` (loadable without Python code)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, args, check_trace=False)
        torch.jit.save(traced, str(path))


def onnx_runner(path: Path, inputs: list[TensorSpec], threads: int | None) -> Runner:
    """Run the ONNX file with onnxruntime."""
    return OnnxSession(path, inputs, threads).run


def torchscript_runner(path: Path, inputs: list[TensorSpec], output_names: list[str]) -> Runner:
    """Run the TorchScript file loaded back with ``torch.jit.load``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")

    @torch.no_grad()
    def run(batch: Batch) -> dict[str, np.ndarray]:
        out = module(*flatten(batch, inputs))
        return {n: t.numpy() for n, t in zip(output_names, out, strict=True)}

    return run


def onnx_graph_info(path: Path) -> tuple[list[str], int]:
    """The ONNX file's input names and its default-domain opset (checked by ``onnx``)."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return [i.name for i in model.graph.input], int(opset)
