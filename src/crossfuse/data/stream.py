"""Reading a table in row chunks, so prediction over a file larger than memory stays flat.

CSV/TSV are read with pandas' chunked reader, JSONL line by line, Parquet by record
batches and tar shards one shard's headers at a time; a JSON list (one document) and
in-memory tables are sliced. Every chunk is a
:class:`~crossfuse.data.table.Table` whose media paths resolve against the file's folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from crossfuse.data.table import (
    SUFFIXES,
    Table,
    TableLike,
    _short,
    check_delimited_header,
    read_table,
)
from crossfuse.errors import ConfigError, TableError

DEFAULT_CHUNK_ROWS = 50_000


def iter_table(source: TableLike, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Table]:
    """Consecutive row chunks of ``source`` (at most ``chunk_rows`` rows each), in order."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if isinstance(source, pd.DataFrame | Table):
        table = read_table(source)
        for start in range(0, len(table), chunk_rows):
            part = table.df.iloc[start : start + chunk_rows].reset_index(drop=True)
            yield Table(part, table.base_dir, table.name)
        return
    from crossfuse.data.shards import is_shard_source, iter_shards  # shards import Table

    if is_shard_source(source):
        yield from iter_shards(source, chunk_rows)
        return
    path = Path(source).expanduser()
    kind = SUFFIXES.get(path.suffix.lower())
    if not path.is_file() or kind in (None, "json"):
        yield from iter_table(read_table(path), chunk_rows=chunk_rows)  # errors, or one document
        return
    folder, name = path.resolve().parent, str(path)
    frames = {"csv": _csv, "tsv": _csv, "jsonl": _jsonl, "parquet": _parquet}[kind]
    for frame in frames(path, kind, chunk_rows):
        yield Table(frame.reset_index(drop=True), folder, name)


def _csv(path: Path, kind: str, rows: int) -> Iterator[pd.DataFrame]:
    sep = "," if kind == "csv" else "\t"
    check_delimited_header(path, sep)
    try:
        yield from pd.read_csv(path, sep=sep, chunksize=rows)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise TableError(f"table {path} is malformed: {_short(e)}") from e


def _jsonl(path: Path, kind: str, rows: int) -> Iterator[pd.DataFrame]:
    batch: list[dict] = []
    with path.open("r", encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise TableError(f"table {path}, line {lineno}: invalid JSON ({e.msg})") from e
            if not isinstance(obj, dict):
                raise TableError(f"table {path}, line {lineno}: expected a JSON object per line")
            batch.append(obj)
            if len(batch) == rows:
                yield pd.DataFrame.from_records(batch)
                batch = []
    if batch:
        yield pd.DataFrame.from_records(batch)


def _parquet(path: Path, kind: str, rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several unrelated types for bad files
        raise TableError(f"table {path} is not a readable Parquet file: {_short(e)}") from e
    for batch in file.iter_batches(batch_size=rows):
        yield batch.to_pandas()
