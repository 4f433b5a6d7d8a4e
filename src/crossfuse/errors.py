"""Errors a user can act on.

Every user-facing failure is a :class:`CrossfuseError`; the CLI prints its message in
one line and exits with status 2, without a traceback.
"""

from __future__ import annotations


class CrossfuseError(Exception):
    """Base class for errors caused by the user's data, config or command."""


class TableError(CrossfuseError):
    """The table could not be read or has the wrong shape."""


class SchemaError(CrossfuseError):
    """The schema (columns, label, modalities) is inconsistent with the table."""


class ConfigError(CrossfuseError):
    """A config value is invalid."""


class ModelDirError(CrossfuseError):
    """A model directory is missing, incomplete or of an incompatible format."""


class CellError(CrossfuseError):
    """One cell could not be decoded.

    Raised by the per-modality decoders with just a ``reason``; the dataset adds the
    row, column and file so the message says exactly where the problem is.
    """

    def __init__(
        self,
        reason: str,
        *,
        row: int | None = None,
        column: str | None = None,
        file: str | None = None,
        table: str | None = None,
    ) -> None:
        self.reason = reason
        self.row = row
        self.column = column
        self.file = file
        self.table = table
        super().__init__(self._message())

    def located(
        self, *, row: int, column: str, table: str | None = None, file: str | None = None
    ) -> CellError:
        """Return a copy of this error that names its row, column and table."""
        return CellError(self.reason, row=row, column=column, file=file or self.file, table=table)

    def _message(self) -> str:
        where = []
        if self.table:
            where.append(f"table {self.table}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.file:
            where.append(f"file {self.file}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason
