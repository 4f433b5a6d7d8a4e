"""The encoder contract: what an encoder receives, what it returns, and its registry."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from crossfuse.errors import ConfigError


@dataclass
class ModalityOutput:
    """One input's encoding of a batch.

    Attributes:
        pooled: (B, D) one vector per row.
        present: (B,) bool; False rows carry no information and must be ignored downstream.
        tokens: optional (B, T, D) sequence (words, image patches, audio frames).
        token_mask: optional (B, T) bool, True for real tokens.
    """

    pooled: torch.Tensor
    present: torch.Tensor
    tokens: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None

    def masked(self, keep: torch.Tensor) -> ModalityOutput:
        """A copy with ``present &= keep`` (used for ablation and modality dropout)."""
        return ModalityOutput(self.pooled, self.present & keep, self.tokens, self.token_mask)


@dataclass
class InputSpec:
    """What an encoder needs to know about its input, taken from the fitted preprocessing."""

    name: str  # input name (the column, or "tabular")
    modality: str  # text | image | audio | tabular
    vocab_size: int = 0  # text: vocabulary size, including <pad>=0 and <unk>=1
    shape: tuple[int, ...] = ()  # image: (C, H, W); audio: (n_mels, frames)
    n_numeric: int = 0  # tabular: number of numeric columns
    cardinalities: list[int] = field(default_factory=list)  # tabular: ids per categorical column
    processor: str = ""  # name of the column processor that produced the input


class Encoder(nn.Module, metaclass=ABCMeta):
    """Base class: ``forward(batch_for_this_input) -> ModalityOutput`` with width ``out_dim``.

    Pretrained encoders set ``pretrained = True``, output their native width (the
    fusion projects it), say which column processor they need, and list their blocks so
    partial fine-tuning and layer-wise learning-rate decay can address them.
    """

    out_dim: int
    pretrained: ClassVar[bool] = False

    @classmethod
    def processor_choice(cls, options: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """``(processor name, config overrides)`` this encoder needs; None → the default."""
        return None

    def blocks(self) -> list[nn.Module]:
        """Layers from input to output (partial fine-tuning trains the last N)."""
        return [self]

    @abstractmethod
    def forward(self, inputs: dict[str, torch.Tensor]) -> ModalityOutput:
        """Encode one input's batch."""


E = TypeVar("E", bound=type[Encoder])
_REGISTRY: dict[str, tuple[Callable[..., Encoder], str]] = {}


def register_encoder(name: str, modality: str) -> Callable[[E], E]:
    """Class decorator registering an encoder under ``name`` for ``modality``."""

    def wrap(cls: E) -> E:
        _REGISTRY[name] = (cls, modality)
        return cls

    return wrap


def encoder_names(modality: str | None = None) -> list[str]:
    """Registered encoder names, optionally only those for one modality."""
    _load_builtin()
    return sorted(n for n, (_, m) in _REGISTRY.items() if modality in (None, m))


def encoder_class(name: str, modality: str | None = None) -> type[Encoder]:
    """The class registered as ``name`` (checked against ``modality`` when given)."""
    _load_builtin()
    if name not in _REGISTRY:
        where = f" for {modality} inputs" if modality else ""
        raise ConfigError(
            f"unknown encoder {name!r}{where}; choose one of: {', '.join(encoder_names(modality))}"
        )
    cls, registered = _REGISTRY[name]
    if modality is not None and registered != modality:
        raise ConfigError(
            f"encoder {name!r} is for {registered} inputs, not {modality}; "
            f"choose one of: {', '.join(encoder_names(modality))}"
        )
    return cls  # type: ignore[return-value]


def create_encoder(name: str, spec: InputSpec, **options: Any) -> Encoder:
    """Build encoder ``name`` for input ``spec`` with keyword ``options`` (e.g. ``dim=128``)."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown encoder {name!r} for input {spec.name!r}; "
            f"choose one of: {', '.join(encoder_names(spec.modality))}"
        )
    cls, modality = _REGISTRY[name]
    if modality != spec.modality:
        raise ConfigError(
            f"encoder {name!r} is for {modality} inputs but {spec.name!r} is {spec.modality}"
        )
    try:
        return cls(spec, **options)
    except TypeError as e:
        raise ConfigError(f"encoder {name!r} for {spec.name!r}: {e}") from None


def _load_builtin() -> None:
    """Import the built-in encoder modules so their decorators run."""
    from crossfuse.encoders import (  # noqa: F401
        audio,
        efficientnet,
        hf_audio,
        hf_text,
        hf_vision,
        image,
        spectrogram_cnn,
        tabular,
        text,
    )
