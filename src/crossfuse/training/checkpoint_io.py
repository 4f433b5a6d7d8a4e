"""Lightning checkpoints as one safetensors file: no pickle is written or loaded.

A Lightning checkpoint is a nested structure of tensors (weights, optimizer moments,
RNG states) and plain values (epoch, step, loop progress, callback and scheduler
states). :class:`SafeCheckpointIO` stores the tensors as safetensors and the structure
as JSON in the file's metadata, and writes the file atomically (temp file, fsync,
rename), so a run killed while saving keeps its previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from safetensors import safe_open
from safetensors.torch import save

from crossfuse.atomic import atomic_write
from crossfuse.errors import CrossfuseError

META_KEY = "crossfuse_checkpoint"


class CheckpointFormatError(CrossfuseError):
    """A checkpoint file is not one crossfuse wrote, or is damaged."""


class SafeCheckpointIO(CheckpointIO):
    """Save and load Lightning checkpoints without pickle (see the module docstring)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        tensors: dict[str, torch.Tensor] = {}
        tree = _pack(checkpoint, tensors)
        data = save(tensors, metadata={META_KEY: json.dumps(tree)})
        atomic_write(Path(path), data)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise CheckpointFormatError(f"checkpoint {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = (f.metadata() or {}).get(META_KEY)
                if meta is None:
                    raise CheckpointFormatError(f"{path} is not a crossfuse checkpoint")
                tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
        except CheckpointFormatError:
            raise
        except Exception as e:  # safetensors raises its own error types for bad files
            raise CheckpointFormatError(f"checkpoint {path} cannot be read: {e}") from None
        return _unpack(json.loads(meta), tensors)

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)


def _pack(value: Any, tensors: dict[str, torch.Tensor], where: str = "") -> Any:
    """``value`` as JSON data; tensors go to ``tensors`` under their path in the tree."""
    if isinstance(value, torch.Tensor):
        tensors[where] = value.detach().cpu().contiguous().clone()  # no shared storage
        return {"__tensor__": where}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _pack(torch.from_numpy(value.copy()), tensors, where)}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__dict__": {k: _pack(v, tensors, f"{where}/{k}") for k, v in value.items()}}
        return {
            "__items__": [
                [_pack(k, tensors, f"{where}/key{i}"), _pack(v, tensors, f"{where}/{i}")]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    if isinstance(value, tuple | list):
        items = [_pack(v, tensors, f"{where}/{i}") for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"checkpoint value at {where or '/'} has unsupported type {type(value)}")


def _unpack(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, list):
        return [_unpack(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        return tensors[tree["__tensor__"]]
    if "__ndarray__" in tree:
        return _unpack(tree["__ndarray__"], tensors).numpy()
    if "__dict__" in tree:
        return {k: _unpack(v, tensors) for k, v in tree["__dict__"].items()}
    if "__items__" in tree:
        return {_unpack(k, tensors): _unpack(v, tensors) for k, v in tree["__items__"]}
    if "__tuple__" in tree:
        return tuple(_unpack(v, tensors) for v in tree["__tuple__"])
    if "__float__" in tree:
        return float(tree["__float__"])
    raise CheckpointFormatError(f"unknown entry in checkpoint structure: {sorted(tree)}")
