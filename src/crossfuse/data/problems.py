"""A record of the cells that could not be used, with where and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One problem found in a table.

    ``row`` is the 0-based position of the data row in the table (the header is not a
    row); ``column`` is ``None`` for problems that concern a whole row.
    """

    row: int | None
    column: str | None
    reason: str
    file: str | None = None
    kind: str = "cell"  # cell | missing | row | label | column

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        parts = []
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        if self.file:
            parts.append(f"file {self.file}")
        where = ", ".join(parts) or "table"
        return f"{where}: {self.reason}"


class ProblemLog:
    """Collects problems; counts them by column and reason for reports."""

    def __init__(self) -> None:
        self._problems: list[Problem] = []
        self._seen: set[tuple] = set()

    def add(self, problem: Problem) -> None:
        key = (problem.row, problem.column, problem.reason, problem.kind)
        if key not in self._seen:  # a cell decoded every epoch is reported once
            self._seen.add(key)
            self._problems.append(problem)

    def extend(self, problems: list[Problem]) -> None:
        for p in problems:
            self.add(p)

    def __len__(self) -> int:
        return len(self._problems)

    def __iter__(self):
        return iter(sorted(self._problems, key=_order))

    def by_column(self) -> Counter:
        return Counter(p.column for p in self._problems)

    def to_list(self) -> list[dict]:
        return [p.to_dict() for p in self]


def _order(p: Problem) -> tuple:
    return (p.row if p.row is not None else -1, p.column or "", p.reason)
