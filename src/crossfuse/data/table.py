"""Reading a user's table (CSV, TSV, JSONL, Parquet or a DataFrame)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import pandas as pd

from crossfuse.errors import TableError

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass
class Table:
    """A table plus where it came from.

    ``base_dir`` is the folder relative media paths are resolved against (the table
    file's folder); ``name`` is used in messages.
    """

    df: pd.DataFrame
    base_dir: Path | None
    name: str

    def __len__(self) -> int:
        return len(self.df)


TableLike: TypeAlias = str | Path | pd.DataFrame | Table


def read_table(source: TableLike, *, base_dir: str | Path | None = None) -> Table:
    """Read ``source`` into a :class:`Table` with a fresh 0..N-1 index.

    Args:
        source: a file path (format from its suffix), a DataFrame, a Table, or tar
            shards: a ``.tar`` file, a folder of them or a brace pattern such as
            ``shards/train-{000..009}.tar`` (see :mod:`crossfuse.data.shards`).
        base_dir: overrides the folder media paths are relative to (for a DataFrame the
            default is the current directory).
    """
    if isinstance(source, Table):
        return source
    if isinstance(source, pd.DataFrame):
        folder = Path(base_dir) if base_dir is not None else Path.cwd()
        return Table(source.reset_index(drop=True), folder, "<DataFrame>")
    from crossfuse.data.shards import is_shard_source, read_shards  # shards import Table

    if is_shard_source(source):
        return read_shards(source, base_dir=base_dir)
    path = Path(source).expanduser()
    if not path.exists():
        raise TableError(f"table {path} not found")
    if path.is_dir():
        raise TableError(
            f"table {path} is a directory; give a .csv, .tsv, .jsonl or .parquet file "
            "or a folder of .tar shards"
        )
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise TableError(
            f"table {path}: unknown format {path.suffix!r}; "
            f"use one of {', '.join(sorted(SUFFIXES))}"
        )
    df = _READERS[kind](path)
    if df.columns.duplicated().any():
        dupes = sorted(set(df.columns[df.columns.duplicated()]))
        raise TableError(f"table {path}: duplicate column names {dupes}")
    if len(df.columns) == 0:
        raise TableError(f"table {path} has no columns")
    folder = Path(base_dir) if base_dir is not None else path.resolve().parent
    return Table(df.reset_index(drop=True), folder, str(path))


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    check_delimited_header(path, sep)
    try:
        return pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise TableError(f"table {path} is malformed: {_short(e)}") from e


def check_delimited_header(path: Path, sep: str) -> None:
    """Refuse an empty file, a missing header and duplicate column names (reads one line)."""
    if path.stat().st_size == 0:
        raise TableError(f"table {path} is empty (0 bytes)")
    try:
        header = pd.read_csv(path, sep=sep, header=None, nrows=1).iloc[0].astype(str).tolist()
    except pd.errors.EmptyDataError as e:
        raise TableError(f"table {path} has no header or rows") from e
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise TableError(f"table {path} is malformed: {_short(e)}") from e
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:  # pandas would silently rename them "a.1"
        raise TableError(f"table {path}: duplicate column names {dupes}")


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    with path.open("r", encoding="utf-8", errors="strict") as f:
        try:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TableError(f"table {path}, line {lineno}: invalid JSON ({e.msg})") from e
                if not isinstance(obj, dict):
                    raise TableError(
                        f"table {path}, line {lineno}: expected a JSON object per line"
                    )
                rows.append(obj)
        except UnicodeDecodeError as e:
            raise TableError(f"table {path} is not UTF-8 text: {e.reason}") from e
    if not rows:
        raise TableError(f"table {path} has no rows")
    return pd.DataFrame.from_records(rows)


def _read_json(path: Path) -> pd.DataFrame:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TableError(f"table {path} is not valid JSON: {_short(e)}") from e
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise TableError(f"table {path}: expected a JSON list of objects (one per row)")
    return pd.DataFrame.from_records(data)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several unrelated types for bad files
        raise TableError(f"table {path} is not a readable Parquet file: {_short(e)}") from e


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__


_READERS = {
    "csv": lambda p: _read_delimited(p, ","),
    "tsv": lambda p: _read_delimited(p, "\t"),
    "jsonl": _read_jsonl,
    "json": _read_json,
    "parquet": _read_parquet,
}
