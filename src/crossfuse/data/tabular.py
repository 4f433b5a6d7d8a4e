"""Numeric and categorical columns, preprocessed together as one "tabular" input.

Numbers are standardised with training statistics; categories are indexed with two
reserved ids (0 = missing, 1 = unknown/unseen). A missing or unparsable number is
marked absent in a per-column mask instead of being silently zero.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from crossfuse.data.media import is_missing
from crossfuse.errors import CellError, ConfigError

MISSING_ID, UNKNOWN_ID = 0, 1


@dataclass
class TabularConfig:
    """How numeric and categorical columns are encoded."""

    max_categories: int = 1000  # most frequent categories kept per column; rarer → unknown
    clip: float = 10.0  # standardised numbers are clipped to ±clip (guards against outliers)

    def __post_init__(self) -> None:
        if self.max_categories < 1 or self.clip <= 0:
            raise ConfigError("tabular.max_categories must be ≥ 1 and tabular.clip > 0")


def parse_number(cell: Any) -> float:
    """A finite float from a cell, or :class:`CellError` saying why not."""
    if is_missing(cell):
        raise CellError("empty cell")
    if isinstance(cell, bool | np.bool_):
        return float(cell)
    try:
        value = float(str(cell).strip()) if isinstance(cell, str) else float(cell)
    except (TypeError, ValueError):
        raise CellError(f"not a number: {str(cell)[:40]!r}") from None
    if not math.isfinite(value):
        raise CellError(f"not a finite number: {cell!r}")
    return value


def category_key(cell: Any) -> str:
    """Categories are compared as strings (so 1, 1.0 and "1" from CSV agree)."""
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    return str(cell).strip()


class TabularProcessor:
    """Standardise numeric columns and index categorical columns of one row."""

    def __init__(
        self,
        numeric: Sequence[str],
        categorical: Sequence[str],
        config: TabularConfig | None = None,
    ) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.config = config or TabularConfig()
        self.mean = [0.0] * len(self.numeric)
        self.std = [1.0] * len(self.numeric)
        self.categories: dict[str, list[str]] = {c: [] for c in self.categorical}
        self._index: dict[str, dict[str, int]] = {c: {} for c in self.categorical}

    @property
    def columns(self) -> list[str]:
        return self.numeric + self.categorical

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table size per categorical column (includes the two reserved ids)."""
        return [len(self.categories[c]) + 2 for c in self.categorical]

    def fit(self, df: pd.DataFrame) -> TabularProcessor:
        for j, col in enumerate(self.numeric):
            values = []
            for cell in df[col]:
                try:
                    values.append(parse_number(cell))
                except CellError:
                    continue
            if values:
                arr = np.asarray(values, dtype=np.float64)
                self.mean[j] = float(arr.mean())
                std = float(arr.std())
                self.std[j] = std if std > 1e-12 else 1.0
        for col in self.categorical:
            counts = Counter(category_key(c) for c in df[col] if not is_missing(c))
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            self.categories[col] = [k for k, _ in ranked[: self.config.max_categories]]
            self._index[col] = {k: i + 2 for i, k in enumerate(self.categories[col])}
        return self

    def process_row(
        self, row: dict[str, Any]
    ) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]]]:
        """One row → tensors, plus ``(column, reason)`` for every unusable cell."""
        problems: list[tuple[str, str]] = []
        num = torch.zeros(len(self.numeric))  # (N,)
        num_present = torch.zeros(len(self.numeric), dtype=torch.bool)
        for j, col in enumerate(self.numeric):
            try:
                z = (parse_number(row[col]) - self.mean[j]) / self.std[j]
            except CellError as e:
                problems.append((col, e.reason))
                continue
            num[j] = max(-self.config.clip, min(self.config.clip, z))
            num_present[j] = True
        cat = torch.zeros(len(self.categorical), dtype=torch.long)  # (M,)
        for j, col in enumerate(self.categorical):
            cell = row[col]
            if is_missing(cell):
                problems.append((col, "empty cell"))
                continue
            cat[j] = self._index[col].get(category_key(cell), UNKNOWN_ID)
        return {"numeric": num, "numeric_present": num_present, "categorical": cat}, problems

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        out = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        # The tabular input is present when any of its cells is.
        out["present"] = out["numeric_present"].any(dim=1) | (out["categorical"] != MISSING_ID).any(
            dim=1
        )
        return out

    def get_state(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "config": {"max_categories": self.config.max_categories, "clip": self.config.clip},
            "mean": self.mean,
            "std": self.std,
            "categories": self.categories,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TabularProcessor:
        proc = cls(state["numeric"], state["categorical"], TabularConfig(**state["config"]))
        proc.mean = [float(x) for x in state["mean"]]
        proc.std = [float(x) for x in state["std"]]
        proc.categories = {c: list(v) for c, v in state["categories"].items()}
        proc._index = {c: {k: i + 2 for i, k in enumerate(v)} for c, v in proc.categories.items()}
        return proc
