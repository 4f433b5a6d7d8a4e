"""References to members of WebDataset-style tar shards, and reading one member lazily.

A media cell of a table read from tar shards holds a *reference*, not bytes::

    <shard path>::<member name>        e.g.  shard-000003.tar::train/000123.png

The shard path is everything up to the first ``.tar::`` (``.tar`` in any case); it is
resolved against the table's folder when relative, like a media path. The member name
is the rest, exactly as stored in the archive. Any text cell containing ``.tar::`` with
something after it is read as a reference. Only uncompressed ``.tar`` files can be
indexed (a compressed stream cannot be seeked).

Reading a member needs its data offset and size, from the shard's index
(:mod:`crossfuse.data.shard_index`: one pass over the headers, kept per process;
reading a table from shards fills it). No file is held open between reads: a table of
references pickles into DataLoader workers as plain strings and each worker indexes
shards on first use.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from crossfuse.data import shard_index
from crossfuse.errors import CellError, TableError

SEPARATOR = "::"
KEY_COLUMN = "__key__"  # the sample key column of a table read from shards
_REF = re.compile(r"^(?P<shard>.+?\.tar)::(?P<member>.+)$", re.IGNORECASE | re.DOTALL)


class ShardRef(NamedTuple):
    """A parsed reference: the shard path (as written in the cell) and the member name."""

    shard: str
    member: str


class MemberBytes(bytes):
    """A shard member's bytes that remember ``source`` (``"<shard>::<member>"``).

    Decoders accept it as ordinary bytes; :func:`crossfuse.data.media.media_name` uses
    ``source`` so a decode error names the shard and the member.
    """

    source: str


def parse_shard_ref(cell: Any) -> ShardRef | None:
    """The reference in ``cell``, or None when it is not a ``<shard>.tar::<member>`` string."""
    if not isinstance(cell, str | os.PathLike):
        return None
    match = _REF.match(str(cell).strip())
    if match is None:
        return None
    return ShardRef(match["shard"], match["member"])


def format_shard_ref(shard: str | Path, member: str) -> str:
    """The cell text for ``member`` of ``shard`` (a path, relative to the table's folder or not)."""
    text = Path(shard).as_posix()
    if not text.lower().endswith(".tar"):
        raise ValueError(f"a shard path must end with .tar, got {text!r}")
    return f"{text}{SEPARATOR}{member}"


def shard_path(ref: ShardRef, base_dir: Path | None) -> Path:
    """The shard file of ``ref``, resolved against ``base_dir`` when relative."""
    path = Path(ref.shard).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


def read_member(
    ref: ShardRef | str, base_dir: Path | None, *, limit: int | None = None
) -> MemberBytes:
    """The bytes of one member (its first ``limit`` bytes when given), read lazily.

    Raises:
        CellError: naming the shard and member when the shard is missing or unreadable,
            or the member is absent, empty or cut short.
    """
    parsed = parse_shard_ref(ref) if isinstance(ref, str) else ref
    if parsed is None:
        raise CellError(f"not a shard reference (expected <shard>.tar::<member>): {ref!r:.200}")
    path = shard_path(parsed, base_dir)
    where = f"{path}{SEPARATOR}{parsed.member}"
    if not path.is_file():
        raise CellError("tar shard not found", file=where)
    try:
        entry = shard_index.member_location(path, parsed.member)
    except (TableError, OSError) as err:
        raise CellError(str(err), file=where) from None
    if entry is None:
        raise CellError("member not in the tar shard", file=where)
    offset, size = entry
    if size == 0:
        raise CellError("shard member is empty (0 bytes)", file=where)
    want = size if limit is None else min(size, limit)
    try:
        with shard_index._open(path) as f:
            f.seek(offset)
            data = f.read(want)
    except OSError as err:
        raise CellError(f"cannot read the tar shard: {err.strerror or err}", file=where) from None
    if len(data) < want:
        raise CellError(
            f"shard member is truncated: {len(data)} of {size} bytes present", file=where
        )
    out = MemberBytes(data)
    out.source = where
    return out
