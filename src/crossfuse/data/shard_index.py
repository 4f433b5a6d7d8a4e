"""The index of a tar shard: where each member's data starts and how long it is.

:func:`scan_shard` walks a shard's 512-byte headers (member data is skipped, not read)
and checks that the archive is complete. Each result is kept per process, compactly
(24 bytes per member), for the last ``INDEX_CACHE_SHARDS`` shards used, keyed by
``(path, mtime, size)`` so a shard rewritten in place is rescanned; random access over
thousands of shards (a shuffled DataLoader) then scans each shard once per process,
not once per sample.
"""

from __future__ import annotations

import os
import tarfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

import numpy as np

from crossfuse.errors import TableError

INDEX_CACHE_SHARDS = 4096  # shard indexes kept per process
_BLOCK = tarfile.BLOCKSIZE
# gzip, bzip2, xz and zstd magic numbers
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")


def member_location(path: str | Path, member: str) -> tuple[int, int] | None:
    """``(data offset, size)`` of ``member`` in the shard at ``path``, or None if absent.

    Uses the shard's memoised index (see :class:`_IndexCache`), scanning it on a miss.

    Raises:
        TableError: see :func:`scan_shard`.
        OSError: the file cannot be opened.
    """
    key = _cache_key(path)
    lookup = _INDEXES.get(key)
    if lookup is None:
        scan_shard(path)  # stores the index
        lookup = _INDEXES.get(key) or _Lookup({})
    return lookup.get(member)


def scan_shard(path: str | Path) -> dict[str, tuple[int, int]]:
    """``{member name: (data offset, size)}`` of a shard's regular files, in archive order.

    Walks the 512-byte headers (member data is skipped, not read) and remembers a
    compact copy of the result for :func:`member_location`.

    Raises:
        TableError: naming the shard when it is not a readable, complete, uncompressed
            tar file, or holds the same member name twice.
        OSError: the file cannot be opened.
    """
    key = _cache_key(path)
    size = key[2]
    index: dict[str, tuple[int, int]] = {}
    with _open(path) as f:
        try:
            with tarfile.open(fileobj=f, mode="r:") as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    if info.name in index:
                        raise TableError(
                            f"tar shard {path}: member {info.name!r} appears twice; "
                            "every member name must be unique"
                        )
                    index[info.name] = (info.offset_data, info.size)
                end = tar.offset  # where the end-of-archive block must be
        except (tarfile.TarError, EOFError) as err:
            f.seek(0)
            raise TableError(_not_a_tar(path, err, f.read(6))) from None
        f.seek(end)
        if f.read(_BLOCK) != bytes(_BLOCK):
            raise TableError(
                f"tar shard {path} is truncated or corrupt at byte {end} of {size}: "
                "no valid header or end-of-archive block there"
            )
    for name, (offset, length) in index.items():
        if offset + length > size:
            raise TableError(f"tar shard {path} is truncated inside member {name!r}")
    _INDEXES.put(key, _Lookup(index))
    return index


def clear_index_cache() -> None:
    """Forget every memoised shard index (the next read of each shard rescans it)."""
    _INDEXES.clear()


class _Lookup:
    """Member name → (offset, size) in 24 bytes per member: sorted name hashes, offsets
    and sizes as arrays (a dict would take ~200). Falls back to a dict if two names of
    one shard share a hash. Hashes are per process, like the cache that holds this."""

    __slots__ = ("_fallback", "_hashes", "_offsets", "_sizes")

    def __init__(self, index: dict[str, tuple[int, int]]) -> None:
        hashes = np.fromiter((hash(n) for n in index), dtype=np.int64, count=len(index))
        order = np.argsort(hashes, kind="stable")
        places = np.array(list(index.values()), dtype=np.int64).reshape(-1, 2)  # (N, 2)
        self._hashes = hashes[order]
        self._offsets, self._sizes = places[order, 0], places[order, 1]
        collide = len(hashes) > 1 and bool((np.diff(self._hashes) == 0).any())
        self._fallback = dict(index) if collide else None

    def get(self, name: str) -> tuple[int, int] | None:
        if self._fallback is not None:
            return self._fallback.get(name)
        h = hash(name)
        i = int(np.searchsorted(self._hashes, h))
        if i < len(self._hashes) and self._hashes[i] == h:
            return int(self._offsets[i]), int(self._sizes[i])
        return None


class _IndexCache:
    """The last ``size`` shard indexes used, keyed by (absolute path, mtime, size), so a
    shard rewritten in place is rescanned. Thread-safe; each process has its own."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int, int], _Lookup] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, int]) -> _Lookup | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, int, int], lookup: _Lookup) -> None:
        with self._lock:
            self._items[key] = lookup
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_INDEXES = _IndexCache(INDEX_CACHE_SHARDS)


def _cache_key(path: str | Path) -> tuple[str, int, int]:
    resolved = os.path.abspath(path)
    st = os.stat(resolved)
    return resolved, st.st_mtime_ns, st.st_size


def _not_a_tar(path: str | Path, err: Exception, head: bytes) -> str:
    if not head:
        return f"tar shard {path} is empty (0 bytes)"
    if head.startswith(_COMPRESSED):
        return (
            f"tar shard {path} is compressed; only uncompressed .tar shards can be read "
            "lazily (decompress them, e.g. gunzip)"
        )
    cause = str(err).strip() or type(err).__name__
    if cause == "unexpected end of data":
        return f"tar shard {path} is truncated: it ends inside a member"
    return f"tar shard {path} is not a readable tar file: {cause}"


def _open(path: str | Path) -> BinaryIO:
    """Open a shard for reading (one place, so tests can count the bytes read)."""
    return open(path, "rb")  # noqa: SIM115 - the callers close it
