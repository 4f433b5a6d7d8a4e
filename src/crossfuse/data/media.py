"""Resolving media cells (file paths or tar shard references) to their content.

A cell is a file path (relative to the table's folder) or, for tables read from tar
shards, a ``<shard>.tar::<member>`` reference (:mod:`crossfuse.data.shard_members`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from crossfuse.data.shard_members import MemberBytes, parse_shard_ref, read_member
from crossfuse.errors import CellError


def is_missing(cell: Any) -> bool:
    """True for empty cells: None, NaN, pandas NA, or a blank string."""
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    if isinstance(cell, str):
        return cell.strip() == ""
    try:
        import pandas as pd

        return bool(pd.isna(cell)) if not isinstance(cell, (bytes, list, tuple)) else False
    except (TypeError, ValueError):
        return False


def resolve_media_path(cell: Any, base_dir: Path | None) -> Path:
    """Turn a media cell into an existing file path.

    Relative paths are taken relative to ``base_dir`` (the table's folder).

    Raises:
        CellError: the cell is empty, the file does not exist, is a directory, or is empty.
    """
    if is_missing(cell):
        raise CellError("empty cell")
    path = Path(str(cell).strip()).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.exists():
        raise CellError("file not found", file=str(path))
    if path.is_dir():
        raise CellError("path is a directory, expected a file", file=str(path))
    if path.stat().st_size == 0:
        raise CellError("file is empty (0 bytes)", file=str(path))
    return path


def resolve_media(cell: Any, base_dir: Path | None) -> Path | bytes:
    """A media cell's content: the bytes of a tar shard member, else an existing file.

    A ``<shard>.tar::<member>`` reference reads that one member (the shard is indexed
    once per process); any other cell behaves as :func:`resolve_media_path`.

    Raises:
        CellError: the cell is empty, the file does not exist or is empty, or the shard
            is missing/unreadable or lacks the member, or the member is empty or cut
            short (naming the shard and the member).
    """
    ref = parse_shard_ref(cell)
    if ref is not None:
        return read_member(ref, base_dir)
    return resolve_media_path(cell, base_dir)


def media_name(source: Any) -> str | None:
    """Where decoded content came from, for error messages: a path, ``shard::member``, or None."""
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, MemberBytes):
        return source.source
    return None
