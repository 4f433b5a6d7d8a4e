"""Checking a table before training: schema, class balance and every problem found."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crossfuse.config import DataConfig
from crossfuse.data.dataset import FusionDataset
from crossfuse.data.labels import LabelEncoder
from crossfuse.data.media import is_missing
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.problems import Problem, ProblemLog
from crossfuse.data.schema import Modality, Schema, Task, infer_schema
from crossfuse.data.table import Table, TableLike, read_table
from crossfuse.errors import CellError, CrossfuseError

MIN_CLASS_COUNT = 2  # a class with fewer training examples than this is flagged


@dataclass
class InspectReport:
    """What `crossfuse inspect` found in a table."""

    table: str
    rows: int
    schema: Schema
    balance: dict[str, dict[str, Any]]
    problems: ProblemLog
    missing_by_column: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rows": self.rows,
            "schema": self.schema.to_dict(),
            "balance": self.balance,
            "missing_by_column": self.missing_by_column,
            "problems": [p.to_dict() for p in self.problems if p.kind != "missing"],
        }

    @property
    def errors(self) -> list[Problem]:
        """Problems other than plain empty cells (which are normal in multimodal data)."""
        return [p for p in self.problems if p.kind != "missing"]


def inspect_table(
    source: TableLike,
    label: str | Sequence[str],
    *,
    overrides: Mapping[str, str] | None = None,
    task: str | Mapping[str, str] | None = None,
    config: DataConfig | None = None,
    progress: Callable[[Iterable[int], int], Iterable[int]] | None = None,
) -> InspectReport:
    """Infer the schema of a table and decode every cell, reporting what is wrong and where.

    Args:
        source: table path, DataFrame or Table.
        label: label column(s).
        overrides: ``{column: modality}`` to force.
        task: force the task (for all labels or per label).
        config: preprocessing config (image size etc.); defaults are fine for checking.
        progress: wraps the row iterator (e.g. a rich progress bar) as ``progress(it, total)``.
    """
    table = read_table(source)
    schema = infer_schema(table.df, label, base_dir=table.base_dir, overrides=overrides, task=task)
    log = ProblemLog()
    _check_duplicates(table, schema, log)
    balance = {col: _label_summary(table.df[col], schema.tasks[col], log) for col in schema.labels}

    pre = Preprocessor(schema, config or DataConfig()).fit(table, labels=False)
    dataset = FusionDataset(table, pre, labels=False)
    rows: Iterable[int] = range(len(dataset))
    if progress is not None:
        rows = progress(rows, len(dataset))
    for i in rows:
        log.extend(dataset[i]["problems"])
    missing = Counter(p.column for p in log if p.kind == "missing")
    return InspectReport(
        table=table.name,
        rows=len(table),
        schema=schema,
        balance=balance,
        problems=log,
        missing_by_column={c: missing.get(c, 0) for c in schema.inputs()},
    )


def _label_summary(values: pd.Series, task: Task, log: ProblemLog) -> dict[str, Any]:
    col = str(values.name)
    enc = LabelEncoder(col, task)
    for i, v in enumerate(values):
        if is_missing(v):
            log.add(Problem(i, col, "missing label", kind="label"))
    if task == Task.REGRESSION:
        nums = pd.to_numeric(values, errors="coerce")
        for i in np.flatnonzero(nums.isna() & ~values.map(is_missing)):
            log.add(Problem(int(i), col, f"label {values.iloc[i]!r} is not a number", kind="label"))
        return {
            "task": "regression",
            "min": _f(nums.min()),
            "max": _f(nums.max()),
            "mean": _f(nums.mean()),
            "std": _f(nums.std()),
        }
    try:
        enc.fit(list(values))
    except CrossfuseError as e:
        log.add(Problem(None, col, str(e), kind="column"))
        return {"task": "classification", "counts": {}}
    counts = Counter()
    for v in values:
        try:
            counts[enc.decode(int(enc.encode(v)))] += 1
        except CellError:
            continue
    for cls, n in counts.items():
        if n < MIN_CLASS_COUNT:
            log.add(Problem(None, col, f"class {cls!r} has only {n} example(s)", kind="label"))
    return {"task": "classification", "counts": {str(k): int(counts[k]) for k in enc.classes}}


def _check_duplicates(table: Table, schema: Schema, log: ProblemLog) -> None:
    inputs = [c for c in schema.inputs() if schema.columns[c] != Modality.IGNORE]
    first_of: dict[tuple, int] = {}
    for i, cells in enumerate(table.df[inputs].itertuples(index=False, name=None)):
        if all(is_missing(c) for c in cells):
            log.add(Problem(i, None, "every input cell is empty", kind="row"))
            continue
        key = tuple("" if is_missing(c) else str(c) for c in cells)
        j = first_of.setdefault(key, i)
        if j == i:
            continue
        labels_differ = any(
            str(table.df[c].iat[i]) != str(table.df[c].iat[j]) for c in schema.labels
        )
        reason = f"duplicate of row {j}" + (" with a different label" if labels_differ else "")
        log.add(Problem(i, None, reason, kind="row"))


def _f(x: Any) -> float | None:
    return None if pd.isna(x) else float(x)
