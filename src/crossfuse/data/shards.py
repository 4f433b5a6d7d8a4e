"""WebDataset-style tar shards as a table source.

A source is one ``.tar`` file, a folder of ``*.tar`` shards (read in sorted order) or a
brace pattern such as ``shards/train-{000..009}.tar`` (or ``{a,b}``), expanded here.
Members are grouped into samples (rows) by their key, the member name up to the first
dot of its base name: ``train/000123.png`` and ``train/000123.json`` are sample
``train/000123``, and the rest of the name (``png``, ``json``, ``left.png``) is its
extension. Each extension becomes a column, named by the extension, except that

- ``.json``/``.jsn`` members are parsed and their top-level fields become columns;
- text members (``.txt``, ``.text``, ``.transcript``) hold their UTF-8 text and label
  members (``.cls``, ``.cls2``, ``.class``, ``.label``, ``.index``, ``.inx``, ``.id``,
  ``.count``) their text, as an integer when it is one;
- every other member (images, audio, anything) becomes a reference
  ``<shard>::<member>`` (see :mod:`crossfuse.data.shard_members`): reading the table
  reads headers only, and the bytes are read when the cell is decoded.

The ``__key__`` column holds the sample key. The type of a member is decided by the
last part of its extension (``left.txt`` is text). Members whose base name has no
extension are skipped, as WebDataset does. A sample without some column gets an empty
cell; a text or JSON member that cannot be decoded leaves its cells empty and is
reported in a :class:`ShardWarning` naming the row, column, shard and member.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from crossfuse.data import shard_index
from crossfuse.data.shard_index import scan_shard
from crossfuse.data.shard_members import KEY_COLUMN, format_shard_ref
from crossfuse.data.table import Table
from crossfuse.errors import ConfigError, TableError

TEXT_EXTENSIONS = frozenset({"txt", "text", "transcript"})
LABEL_EXTENSIONS = frozenset({"cls", "cls2", "class", "label", "index", "inx", "id", "count"})
JSON_EXTENSIONS = frozenset({"json", "jsn"})
VALUE_EXTENSIONS = TEXT_EXTENSIONS | LABEL_EXTENSIONS | JSON_EXTENSIONS
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_WARN_EXAMPLES = 5  # bad members named per warning


class ShardWarning(UserWarning):
    """Text or JSON members of a shard could not be decoded (their cells are left empty)."""


def is_shard_source(source: Any) -> bool:
    """True for a ``.tar`` path, a brace pattern of ``.tar`` paths or a folder of ``*.tar``."""
    if not isinstance(source, str | os.PathLike):
        return False
    text = os.fspath(source)
    if text.lower().endswith(".tar"):
        return True
    path = Path(text).expanduser()
    return path.is_dir() and any(path.glob("*.tar"))


def shard_paths(source: str | os.PathLike) -> list[Path]:
    """The shard files of a source, in reading order.

    Raises:
        TableError: a URL, an unbalanced brace pattern, a named shard that does not
            exist, or a folder without ``*.tar`` files.
    """
    text = os.fspath(source)
    if "://" in text or text.startswith("pipe:"):
        raise TableError(f"tar shards {text!r}: only local files are supported, not URLs")
    path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.glob("*.tar") if p.is_file())
        if not found:
            raise TableError(f"folder {path} holds no .tar shards")
        return found
    paths = [Path(p).expanduser() for p in expand_braces(text)]
    for p in paths:
        if not p.is_file():
            raise TableError(
                f"tar shard {p} not found" + (f" (from {text})" if "{" in text else "")
            )
    return paths


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{a,b}`` lists and ``{000..009}`` ranges (zero padding kept), left to right.

    Raises:
        TableError: an unbalanced or empty brace group, or nested braces.
    """
    start = pattern.find("{")
    if start < 0:
        if "}" in pattern:
            raise TableError(f"unbalanced '}}' in shard pattern {pattern!r}")
        return [pattern]
    end = pattern.find("}", start)
    if end < 0 or "{" in pattern[start + 1 : end]:
        raise TableError(f"unbalanced or nested braces in shard pattern {pattern!r}")
    body, head, tail = pattern[start + 1 : end], pattern[:start], pattern[end + 1 :]
    if (m := _RANGE.match(body)) is not None:
        lo, hi = int(m[1]), int(m[2])
        width = len(m[1]) if m[1].lstrip("-").startswith("0") else 0
        step = 1 if hi >= lo else -1
        choices = [f"{i:0{width}d}" for i in range(lo, hi + step, step)]
    elif "," in body:
        choices = body.split(",")
    else:
        raise TableError(
            f"shard pattern {pattern!r}: {{{body}}} is neither a list {{a,b}} nor a range {{0..9}}"
        )
    return [p for c in choices for p in expand_braces(head + c + tail)]


def read_shards(source: str | os.PathLike, *, base_dir: str | Path | None = None) -> Table:
    """All samples of a shard source as one :class:`Table` (media cells are references).

    ``base_dir`` is the shards' folder (their common folder) unless given; references
    are written relative to it. ``name`` is the source as given.
    """
    paths = shard_paths(source)
    base = Path(base_dir).resolve() if base_dir is not None else _common_folder(paths)
    columns: dict[str, list[Any]] = {KEY_COLUMN: []}
    for path in paths:
        _append(columns, _shard_samples(path, base, row0=len(columns[KEY_COLUMN])))
    return Table(_frame(columns), base, os.fspath(source))


def iter_shards(source: str | os.PathLike, chunk_rows: int) -> Iterator[Table]:
    """Consecutive chunks of exactly ``chunk_rows`` samples (the last may be shorter),
    reading one shard's headers at a time."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    paths = shard_paths(source)
    base, name = _common_folder(paths), os.fspath(source)
    pending: dict[str, list[Any]] = {KEY_COLUMN: []}
    done = 0  # rows yielded so far
    for path in paths:
        _append(pending, _shard_samples(path, base, row0=done + len(pending[KEY_COLUMN])))
        start = 0
        while len(pending[KEY_COLUMN]) - start >= chunk_rows:
            yield Table(
                _frame({c: v[start : start + chunk_rows] for c, v in pending.items()}), base, name
            )
            start += chunk_rows
        done += start
        pending = {c: v[start:] for c, v in pending.items()}
    if pending[KEY_COLUMN]:
        yield Table(_frame(pending), base, name)


def _shard_samples(path: Path, base: Path, row0: int) -> dict[str, list[Any]]:
    """The samples of one shard as columns (a dict of equal-length lists)."""
    index = scan_shard(path)  # headers only; also primes the index used to decode cells
    prefix = format_shard_ref(_relative(path, base), "")  # "<shard>::", then the member
    rows: dict[str, dict[str, Any]] = {}  # key → {column: value}, in order of appearance
    bad: list[str] = []  # the first few bad members, described
    n_bad = 0
    with shard_index._open(path) as f:
        for member, (offset, size) in index.items():
            folder, _, base_name = member.rpartition("/")
            stem, dot, ext = base_name.partition(".")
            if not dot or not stem or not ext:
                continue  # no key or no extension: not part of a sample (as in WebDataset)
            key = f"{folder}/{stem}" if folder else stem
            row = rows.setdefault(key, {KEY_COLUMN: key})
            kind = ext.rsplit(".", 1)[-1].lower()
            if kind not in VALUE_EXTENSIONS:
                _put(row, {ext: prefix + member}, path, member)
                continue
            try:
                value = _decode_value(kind, _read(f, offset, size))
            except ValueError as err:
                n_bad += 1
                if len(bad) < _WARN_EXAMPLES:
                    row_no = row0 + list(rows).index(key)
                    bad.append(f"row {row_no}, column {ext!r}, file {path}::{member}: {err}")
                continue
            _put(row, value if kind in JSON_EXTENSIONS else {ext: value}, path, member)
    if n_bad:
        more = f" (and {n_bad - len(bad)} more)" if n_bad > len(bad) else ""
        examples = "; ".join(bad)
        warnings.warn(
            f"{n_bad} member(s) of tar shard {path} could not be decoded and are left "
            f"empty: {examples}{more}",
            ShardWarning,
            stacklevel=3,
        )
    names = dict.fromkeys(c for row in rows.values() for c in row)
    columns = {c: [row.get(c) for row in rows.values()] for c in names}
    return columns or {KEY_COLUMN: []}


def _put(row: dict[str, Any], values: dict[str, Any], path: Path, member: str) -> None:
    """Add a member's column(s) to its sample; two sources for one column is an error."""
    clash = sorted(set(values) & set(row))
    if clash:
        raise TableError(
            f"tar shard {path}: column(s) {clash} from member {member!r} are already set by "
            "another member of the same sample (or are the sample key)"
        )
    row.update(values)


def _decode_value(kind: str, data: bytes) -> Any:
    """A text, label or JSON member's value. ValueError says why it cannot be decoded."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    if kind in JSON_EXTENSIONS:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"invalid JSON ({err.msg}, line {err.lineno})") from None
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        return value
    text = text.strip()
    if kind in LABEL_EXTENSIONS and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return text


def _read(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    data = f.read(size)
    if len(data) < size:
        raise ValueError(f"member truncated: {len(data)} of {size} bytes present")
    return data


def _append(columns: dict[str, list[Any]], new: dict[str, list[Any]]) -> None:
    """Append ``new`` rows (equal-length lists) to ``columns``, padding absent cells with None."""
    n_old, n_new = len(columns[KEY_COLUMN]), len(new.get(KEY_COLUMN, []))
    for col, values in new.items():
        if col not in columns:
            columns[col] = [None] * n_old
        columns[col].extend(values)
    for values in columns.values():
        if len(values) < n_old + n_new:
            values.extend([None] * (n_old + n_new - len(values)))


def _frame(columns: dict[str, list[Any]]) -> pd.DataFrame:
    return pd.DataFrame(columns)  # dtypes inferred as for a CSV: str, float (None → NaN), ...


def _common_folder(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))


def _relative(path: Path, base: Path) -> str:
    """The shard path as written in references: relative to ``base`` (posix)."""
    return Path(os.path.relpath(path.resolve(), base)).as_posix()
