"""A FusionModel behind a flat tensor interface, as exporters and runtimes need it.

Exporters (ONNX, TorchScript) take a module whose inputs are a fixed, ordered list of
tensors and whose outputs are tensors. :class:`FlatFusionModel` takes the collated
batch as tensors named ``<input>.<key>`` (``picture.pixels``, ``picture.present``, ...)
and returns each task's probabilities (classification, ``(B, C)``) or standardised
values (regression, ``(B,)``), exactly what :func:`crossfuse.models.inference.run_inference`
computes. Presence masks are ordinary inputs, so a missing modality works after export.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from crossfuse.data.preprocessor import Preprocessor
from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ModelDirError
from crossfuse.models.fusion_model import FusionModel

BATCH = "batch"  # name of the dynamic batch axis
DTYPES = {torch.float32: "float32", torch.int64: "int64", torch.bool: "bool"}

Batch = dict[str, dict[str, torch.Tensor]]  # input → {key: (B, ...) tensor}


@dataclass(frozen=True)
class TensorSpec:
    """One flat input: which input and batch key it is, its dtype and shape.

    ``shape`` holds ints for fixed axes and names for dynamic ones (axis 0 is ``batch``).
    """

    name: str  # "<input>.<key>"
    input: str
    key: str
    dtype: str  # float32 | int64 | bool
    shape: tuple[int | str, ...]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        try:
            return cls(
                str(data["name"]),
                str(data["input"]),
                str(data["key"]),
                str(data["dtype"]),
                tuple(data["shape"]),
            )
        except (KeyError, TypeError) as e:
            raise ModelDirError(f"invalid input entry in export.json: {data!r} ({e})") from None


@dataclass(frozen=True)
class OutputSpec:
    """One flat output: a task's probabilities ``(B, C)`` or standardised values ``(B,)``."""

    name: str  # "<task>.proba" or "<task>.value"
    task: str
    kind: str  # classification | regression
    shape: tuple[int | str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}


def tensor_specs(inputs: Batch, pre: Preprocessor) -> list[TensorSpec]:
    """The flat inputs of a collated batch, sorted by input then key.

    Axis 0 is the dynamic batch axis; a text input's token axis is dynamic too
    (``<input>.tokens``), since batches are padded to their longest cell.
    """
    modalities = pre.inputs
    specs = []
    for name in sorted(inputs):
        for key in sorted(inputs[name]):
            value = inputs[name][key]
            if value.dtype not in DTYPES:
                raise ModelDirError(
                    f"input {name}.{key} has dtype {value.dtype}; export supports "
                    f"{', '.join(DTYPES.values())}"
                )
            shape: list[int | str] = [BATCH, *value.shape[1:]]
            if modalities.get(name) == "text" and value.dim() == 2:
                shape[1] = f"{name}.tokens"
            specs.append(TensorSpec(f"{name}.{key}", name, key, DTYPES[value.dtype], tuple(shape)))
    return specs


def output_specs(model: FusionModel) -> list[OutputSpec]:
    """One output per task, in the model's task order."""
    return [
        OutputSpec(f"{t.name}.proba", t.name, t.task, (BATCH, t.out_dim))
        if t.task == "classification"
        else OutputSpec(f"{t.name}.value", t.name, t.task, (BATCH,))
        for t in model.tasks
    ]


def flatten(inputs: Batch, specs: list[TensorSpec]) -> tuple[torch.Tensor, ...]:
    """The batch's tensors in ``specs`` order (the flat model's positional inputs)."""
    try:
        return tuple(inputs[s.input][s.key] for s in specs)
    except KeyError as e:
        raise ModelDirError(
            f"the batch has no tensor {e.args[0]!r} that the export expects"
        ) from None


class FlatFusionModel(nn.Module):
    """``forward(*tensors) -> tuple`` of per-task probabilities / values.

    Args:
        model: the trained network (put and kept in eval mode). It runs as
            ``encode`` → :func:`absent_zeroed` → ``fuse`` → ``heads_forward``.
        inputs: the flat inputs, in positional order (see :func:`tensor_specs`).
    """

    def __init__(self, model: FusionModel, inputs: list[TensorSpec]) -> None:
        super().__init__()
        self.model = model
        self.inputs = list(inputs)
        self.outputs = output_specs(model)
        self.eval()

    def train(self, mode: bool = True) -> FlatFusionModel:
        """Always eval mode (dropout off, BatchNorm statistics frozen): inference only.

        Exporters switch a module to eval and back to its former mode; this keeps such a
        round trip from putting the wrapped model into training mode.
        """
        return super().train(False)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch: Batch = {}
        for spec, value in zip(self.inputs, tensors, strict=True):
            batch.setdefault(spec.input, {})[spec.key] = value
        outputs = {name: absent_zeroed(out) for name, out in self.model.encode(batch).items()}
        logits = self.model.heads_forward(self.model.fuse(outputs))  # {task: (B, out_dim)}
        return tuple(
            logits[t.name].softmax(-1) if t.task == "classification" else logits[t.name].reshape(-1)
            for t in self.model.tasks
        )


def absent_zeroed(out: ModalityOutput) -> ModalityOutput:
    """``out`` with absent rows exactly zero and fully masked, as the encoders promise.

    A no-op for the unmodified encoders; it restores the promise where
    :func:`traceable_encoders` made an encoder run its absent rows too.
    """
    keep = out.present.bool()  # (B,)
    zero = torch.zeros((), dtype=out.pooled.dtype, device=out.pooled.device)
    pooled = torch.where(keep[:, None], out.pooled, zero)  # (B, D)
    tokens, mask = out.tokens, out.token_mask
    if tokens is not None:
        tokens = torch.where(keep[:, None, None], tokens, zero.to(tokens.dtype))  # (B, T, D)
    if mask is not None:
        mask = mask.bool() & keep[:, None]  # (B, T)
    return ModalityOutput(pooled, out.present, tokens, mask)


def _every_row(present: torch.Tensor) -> torch.Tensor:
    """Trace-friendly ``present_index``: all row numbers ``(B,)`` (see :func:`absent_zeroed`)."""
    return torch.arange(present.shape[0], device=present.device)


def _all_rows(
    net: Any, x: torch.Tensor, present: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trace-friendly ``run_present``: every row through ``net``, absent rows zeroed.

    In eval mode the encoders' networks treat rows independently, so present rows get
    the same values as when only they run; absent rows come out exactly zero, as
    ``scatter_rows`` would leave them. Unlike the original there is no data-dependent
    branch and no empty batch, which tracing would bake in or runtimes reject.
    """
    out = net(x)
    keep = present.view(-1, *([1] * (out.dim() - 1)))
    zero = torch.zeros((), dtype=out.dtype, device=out.device)
    return torch.where(keep, out, zero), torch.arange(x.shape[0], device=x.device)


@contextlib.contextmanager
def traceable_encoders() -> Iterator[None]:
    """While tracing: encoders run all rows instead of selecting the present ones.

    Selecting rows has a data-dependent branch (no row present) that tracing would bake
    in, and an empty selection that runtimes reject in reshapes. So, in every loaded
    encoder module, ``run_present`` becomes :func:`_all_rows` and ``present_index`` (the
    Hugging Face encoders) :func:`_every_row`; both are restored afterwards. The export
    is then checked against the unmodified model, so any difference is caught.
    """
    from crossfuse.encoders import hf_common, image

    swaps = {image.run_present: _all_rows, hf_common.present_index: _every_row}
    done: list[tuple[Any, str, Any]] = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("crossfuse.encoders"):
            continue
        for attr in ("run_present", "present_index"):
            original = getattr(module, attr, None)
            if original in swaps:
                setattr(module, attr, swaps[original])
                done.append((module, attr, original))
    try:
        yield
    finally:
        for module, attr, original in done:
            setattr(module, attr, original)
