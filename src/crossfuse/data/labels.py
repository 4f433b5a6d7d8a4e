"""Encoding label columns: class indices for classification, scaled values for regression."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from crossfuse.data.media import is_missing
from crossfuse.data.schema import Task
from crossfuse.data.tabular import category_key, parse_number
from crossfuse.errors import CellError, SchemaError


def _native(value: Any) -> Any:
    """numpy scalars → Python scalars so classes can be written to JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class LabelEncoder:
    """Maps one label column to training targets and back."""

    def __init__(self, column: str, task: Task) -> None:
        self.column = column
        self.task = Task(task)
        self.classes: list[Any] = []
        self._index: dict[str, int] = {}
        self.mean, self.std = 0.0, 1.0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fit(self, values: Sequence[Any]) -> LabelEncoder:
        cells = [v for v in values if not is_missing(v)]
        if not cells:
            raise SchemaError(f"label column {self.column!r} has no values in the training data")
        if self.task == Task.CLASSIFICATION:
            by_key = {category_key(v): _native(v) for v in cells}
            keys = sorted(by_key, key=lambda k: _sort_key(by_key[k]))
            if len(keys) < 2:
                raise SchemaError(
                    f"label column {self.column!r} has only one class ({keys[0]!r}) in the "
                    "training data; classification needs at least two"
                )
            self.classes = [by_key[k] for k in keys]
            self._index = {k: i for i, k in enumerate(keys)}
        else:
            nums = []
            for i, v in enumerate(cells):
                try:
                    nums.append(parse_number(v))
                except CellError as e:
                    raise SchemaError(
                        f"label column {self.column!r} is numeric (regression) "
                        f"but value #{i} is {e.reason}"
                    ) from None
            arr = np.asarray(nums, dtype=np.float64)
            self.mean = float(arr.mean())
            self.std = float(arr.std()) or 1.0
        return self

    def encode(self, value: Any) -> int | float:
        """Class index, or standardised regression target; CellError when unusable."""
        if is_missing(value):
            raise CellError("missing label")
        if self.task == Task.CLASSIFICATION:
            idx = self._index.get(category_key(value))
            if idx is None:
                raise CellError(f"label {value!r} was not seen in training")
            return idx
        return (parse_number(value) - self.mean) / self.std

    def decode(self, index: int) -> Any:
        return self.classes[index]

    def unscale(self, values: np.ndarray) -> np.ndarray:
        """Standardised regression outputs → the label's own units."""
        return values * self.std + self.mean

    def get_state(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "task": str(self.task),
            "classes": self.classes,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LabelEncoder:
        enc = cls(state["column"], Task(state["task"]))
        enc.classes = list(state["classes"])
        enc._index = {category_key(c): i for i, c in enumerate(enc.classes)}
        enc.mean, enc.std = float(state["mean"]), float(state["std"])
        return enc


def _sort_key(value: Any) -> tuple[int, Any]:
    return (
        (0, value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else (1, str(value))
    )
