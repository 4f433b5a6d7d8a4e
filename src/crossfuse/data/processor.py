"""The contract every per-column processor follows, and their registry.

A processor turns one cell of a column into a tensor (``process``) and a list of such
tensors into a batch (``collate``). It is fitted on the training split only and its
state is plain JSON, saved in the model directory, so the exact same preprocessing is
applied at prediction time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from crossfuse.errors import ConfigError

_REGISTRY: dict[str, type[ColumnProcessor]] = {}

P = TypeVar("P", bound="type[ColumnProcessor]")


def register_processor(name: str, modality: str | None = None) -> Callable[[P], P]:
    """Class decorator registering ``cls`` as processor ``name`` for ``modality``.

    The default processor of a modality is registered under the modality's own name
    ("text", "image", "audio"); encoders that need other preprocessing (a pretrained
    tokenizer, raw waveforms) register theirs under their own name.
    """

    def wrap(cls: P) -> P:
        cls.processor_name = name
        cls.modality = modality or name
        _REGISTRY[name] = cls
        return cls

    return wrap


def processor_class(name: str) -> type[ColumnProcessor]:
    """The processor class registered as ``name``."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"no column processor named {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


class ColumnProcessor(ABC):
    """Decode, clean and tensorise the cells of one column.

    ``process`` raises :class:`crossfuse.errors.CellError` with a short reason for a cell
    that cannot be used; the dataset turns it into ``present=False`` (or an error in
    strict mode) and records where it happened.
    """

    modality: ClassVar[str]
    processor_name: ClassVar[str]
    config_class: ClassVar[type]  # the dataclass its constructor takes

    def fit(self, cells: Sequence[Any], base_dir: Path | None = None) -> ColumnProcessor:
        """Learn statistics from the training cells (default: nothing to learn)."""
        return self

    @abstractmethod
    def process(
        self,
        cell: Any,
        *,
        base_dir: Path | None = None,
        train: bool = False,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """One cell → one tensor. ``train`` enables augmentation drawn from ``rng``."""

    @abstractmethod
    def collate(self, items: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Stack a batch; ``None`` marks an absent cell. Always includes ``present (B,)``."""

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable config and fitted state."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> ColumnProcessor:
        """Rebuild a fitted processor from :meth:`get_state`."""


class ReloadsAfterPickling:
    """Mixin for processors that lazily load a tokenizer or feature extractor.

    The loaded object named in ``_reloadable`` is dropped when the processor is pickled
    (e.g. into DataLoader workers) and loaded again on first use there.
    """

    _reloadable: ClassVar[str] = "_hf"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state[self._reloadable] = None
        return state


def stack_fixed(items: list[torch.Tensor | None], shape: tuple[int, ...], key: str) -> dict:
    """Collate fixed-shape items; absent ones become zeros that the mask marks absent."""
    present = torch.tensor([x is not None for x in items], dtype=torch.bool)
    dtype = next((x.dtype for x in items if x is not None), torch.float32)
    out = torch.zeros((len(items), *shape), dtype=dtype)
    for i, x in enumerate(items):
        if x is not None:
            out[i] = x
    return {key: out, "present": present}
