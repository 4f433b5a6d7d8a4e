"""Resolving media cells (file paths) to files, with reasons when they cannot be used."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

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
