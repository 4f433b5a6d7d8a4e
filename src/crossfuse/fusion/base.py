"""The fusion contract and its registry.

A fusion takes ``dict[str, ModalityOutput]`` (iterated in sorted key order) and returns
``(B, out_dim)``. It must honour each input's ``present`` mask: an absent input may not
influence the output, and rows where every input is absent still get a finite output.
Decision-level fusions (``decision_level = True``) return the concatenated logits of
all tasks instead of an embedding; the model then uses no extra head.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError


class Fusion(nn.Module, metaclass=ABCMeta):
    """Base class for fusions.

    Constructor arguments every fusion accepts: ``in_dims`` ({input: pooled width}),
    ``hidden`` (output width for feature-level fusions), ``out_dims`` ({task: logits
    width}; used only by decision-level fusions), plus its own keyword options.
    """

    out_dim: int
    decision_level: bool = False

    @abstractmethod
    def forward(self, outputs: dict[str, ModalityOutput]) -> torch.Tensor:
        """Fuse the inputs' outputs into ``(B, out_dim)``."""


F = TypeVar("F", bound=type[Fusion])
_REGISTRY: dict[str, type[Fusion]] = {}


def register_fusion(name: str) -> Callable[[F], F]:
    """Class decorator registering a fusion under ``name``."""

    def wrap(cls: F) -> F:
        _REGISTRY[name] = cls
        return cls

    return wrap


def fusion_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def create_fusion(
    name: str,
    in_dims: dict[str, int],
    *,
    hidden: int,
    out_dims: dict[str, int],
    **options: Any,
) -> Fusion:
    """Build fusion ``name`` over inputs of widths ``in_dims``."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown fusion {name!r}; choose one of: {', '.join(fusion_names())}")
    try:
        return _REGISTRY[name](in_dims=in_dims, hidden=hidden, out_dims=out_dims, **options)
    except TypeError as e:
        raise ConfigError(f"fusion {name!r}: {e}") from None


def _load_builtin() -> None:
    from crossfuse.fusion import (  # noqa: F401
        attention,
        concat,
        ensemble,
        gated,
        late,
        low_rank,
        tensor,
        weighted,
    )
