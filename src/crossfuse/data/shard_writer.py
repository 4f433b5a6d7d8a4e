"""Writing a table as WebDataset-style tar shards (``shard-000000.tar``, ...).

Each row becomes one sample with key ``<row>`` (zero-padded to six digits): each media
column's file is copied in unchanged as member ``<key>.<column>``, and the other
columns go into ``<key>.json`` (empty cells are left out). Reading the shards back
(:func:`crossfuse.data.shards.read_shards`) gives the same columns, plus ``__key__``,
with media cells as ``shard::member`` references. The table is read in chunks of
``rows_per_shard`` rows, so a table larger than memory can be converted; each shard is
written to a temporary file beside it and renamed into place when complete.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossfuse.atomic import atomic_file
from crossfuse.data.media import is_missing, resolve_media
from crossfuse.data.problems import Problem
from crossfuse.data.schema import Modality, infer_column
from crossfuse.data.shard_members import KEY_COLUMN
from crossfuse.data.shards import VALUE_EXTENSIONS
from crossfuse.data.stream import iter_table
from crossfuse.data.table import Table, TableLike
from crossfuse.errors import CellError, ConfigError, TableError

SHARD_NAME = "shard-{:06d}.tar"
_MEDIA = (Modality.IMAGE, Modality.AUDIO)


@dataclass
class ShardWriteResult:
    """What :func:`write_shards` wrote."""

    out_dir: Path
    shards: list[Path]
    rows: int
    media_columns: list[str]
    problems: list[Problem] = field(default_factory=list)  # media cells left out


def write_shards(
    source: TableLike,
    out_dir: str | Path,
    *,
    rows_per_shard: int = 1000,
    media: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ShardWriteResult:
    """Write ``source`` as tar shards of ``rows_per_shard`` samples into ``out_dir``.

    Args:
        source: any table :func:`~crossfuse.data.table.read_table` accepts.
        out_dir: the folder for ``shard-000000.tar``, ... (created if needed).
        rows_per_shard: samples per shard.
        media: the columns whose files become members; by default the columns inferred
            as image or audio from the first ``rows_per_shard`` rows, and columns of bytes.
        overwrite: replace the ``shard-*.tar`` files of an earlier run (else refused).
        progress: called with the number of rows written after each shard.

    A media cell whose file cannot be read is left out of its sample (an empty cell
    when read back) and listed in ``problems``.

    Raises:
        ConfigError: bad ``rows_per_shard``, an unknown or unusable media column, or
            existing shards without ``overwrite``.
    """
    if isinstance(rows_per_shard, bool) or not isinstance(rows_per_shard, int):
        raise ConfigError(f"rows_per_shard must be a positive integer, got {rows_per_shard!r}")
    if rows_per_shard < 1:
        raise ConfigError(f"rows_per_shard must be a positive integer, got {rows_per_shard!r}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    old = sorted(out.glob("shard-*.tar")) if out.is_dir() else []
    if old and not overwrite:
        raise ConfigError(
            f"--out {out} already holds {len(old)} shard(s) ({old[0].name}, ...); "
            "choose an empty folder or overwrite them (--overwrite)"
        )
    out.mkdir(parents=True, exist_ok=True)
    result = ShardWriteResult(out, [], 0, [])
    for chunk in iter_table(source, chunk_rows=rows_per_shard):
        if not result.shards:
            result.media_columns = _media_columns(chunk, media)
        target = out / SHARD_NAME.format(len(result.shards))
        _write_shard(target, chunk, result)
        result.shards.append(target)
        result.rows += len(chunk)
        if progress is not None:
            progress(result.rows)
    if not result.shards:
        raise TableError("the table has no rows: nothing to write")
    for stale in set(old) - set(result.shards):
        stale.unlink()
    return result


def _media_columns(chunk: Table, wanted: Sequence[str] | None) -> list[str]:
    columns = [str(c) for c in chunk.df.columns if str(c) != KEY_COLUMN]
    if wanted is None:
        chosen = [c for c in columns if _holds_media(chunk, c)]
    else:
        unknown = [c for c in wanted if c not in columns]
        if unknown:
            raise ConfigError(f"media column(s) {unknown} not in the table: {columns}")
        chosen = list(dict.fromkeys(wanted))
    for col in chosen:
        kind = col.rsplit(".", 1)[-1].lower()
        if not col or "/" in col or col.startswith(".") or kind in VALUE_EXTENSIONS:
            raise ConfigError(
                f"media column {col!r} cannot name a shard member: member names are "
                f"<key>.<column>, so the column must not contain '/', start with '.', or "
                f"end in a text/JSON extension ({', '.join(sorted(VALUE_EXTENSIONS))}); "
                "rename it"
            )
    return chosen


def _holds_media(chunk: Table, column: str) -> bool:
    present = [c for c in chunk.df[column] if not is_missing(c)]
    if present and _is_bytes(present[0]):
        return True
    return infer_column(chunk.df[column], column, chunk.base_dir)[0] in _MEDIA


def _write_shard(target: Path, chunk: Table, result: ShardWriteResult) -> None:
    """Write one shard to a temp file beside ``target`` and rename it into place."""
    with (
        atomic_file(target) as f,
        tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for i, row in enumerate(chunk.df.to_dict("records")):
            _write_sample(tar, f"{result.rows + i:06d}", row, chunk, result)


def _write_sample(
    tar: tarfile.TarFile, key: str, row: dict[Any, Any], chunk: Table, result: ShardWriteResult
) -> None:
    values = {}
    for col, cell in row.items():
        name = str(col)
        if name == KEY_COLUMN or is_missing(cell):
            continue
        if name not in result.media_columns:
            values[name] = _json_value(cell, key, name)
            continue
        member = f"{key}.{name}"
        try:
            source = resolve_media(cell, chunk.base_dir) if not _is_bytes(cell) else bytes(cell)
        except CellError as err:
            result.problems.append(Problem(int(key), name, err.reason, file=err.file, kind="cell"))
            continue
        if isinstance(source, bytes):
            _add(tar, member, len(source), io.BytesIO(source))
        else:
            with open(source, "rb") as f:  # streamed: the file is never held in memory
                _add(tar, member, os.fstat(f.fileno()).st_size, f)
    data = json.dumps(values, ensure_ascii=False).encode("utf-8")
    _add(tar, f"{key}.json", len(data), io.BytesIO(data))


def _add(tar: tarfile.TarFile, name: str, size: int, data: Any) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0  # fixed metadata: same table → same bytes
    tar.addfile(info, data)


def _is_bytes(cell: Any) -> bool:
    return isinstance(cell, bytes | bytearray | memoryview)


def _json_value(cell: Any, key: str, column: str) -> Any:
    """A cell as a JSON value (numpy scalars → Python, timestamps → ISO text)."""
    if isinstance(cell, np.generic):
        cell = cell.item()
    if isinstance(cell, np.ndarray):
        cell = cell.tolist()
    if hasattr(cell, "isoformat"):
        return cell.isoformat()
    try:
        json.dumps(cell)
    except (TypeError, ValueError):
        raise TableError(
            f"row {int(key)}, column {column!r}: a {type(cell).__name__} cannot be stored "
            "in the sample's JSON; give text, numbers, lists or objects"
        ) from None
    return cell
