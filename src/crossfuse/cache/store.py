"""An on-disk store of per-cell features: one SQLite file, safe across processes.

Rows are keyed by ``(namespace, key)``: the namespace names an (encoder, processor)
pair (see :func:`crossfuse.cache.keys.namespace`) and the key a cell's content hash.
SQLite in WAL mode gives atomic multi-row writes and lets readers (DataLoader workers)
run while another process writes; no reader ever sees half a row.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossfuse.errors import ConfigError, CrossfuseError

DB_NAME = "cache.sqlite"
DTYPES = ("float16", "float32")
_F16_MAX = 65504.0  # largest finite float16; rows beyond it are kept as float32
_WAL_LIMIT = 16 << 20  # bytes the write-ahead log is cut back to after a checkpoint
_CHUNK = 500  # keys per SELECT (below SQLite's bound-variable limit)
_SCHEMA = """CREATE TABLE IF NOT EXISTS features (
    namespace TEXT NOT NULL, key TEXT NOT NULL, pooled BLOB NOT NULL,
    tokens BLOB NULL, token_mask BLOB NULL, shape TEXT NOT NULL, dtype TEXT NOT NULL,
    PRIMARY KEY (namespace, key))"""


class CacheMissError(CrossfuseError):
    """Features expected in the cache are not there (it was cleared or is stale)."""


@dataclass
class CachedItem:
    """The cached encoding of one cell."""

    pooled: torch.Tensor  # (D,) one vector for the cell
    tokens: torch.Tensor | None = None  # (T, D) sequence features, when stored
    token_mask: torch.Tensor | None = None  # (T,) bool, True for real tokens; None = all real

    def __post_init__(self) -> None:
        if self.pooled.dim() != 1:
            raise ValueError(f"pooled must be (D,), got {tuple(self.pooled.shape)}")
        if self.tokens is None:
            if self.token_mask is not None:
                raise ValueError("token_mask given without tokens")
            return
        if self.tokens.dim() != 2:
            raise ValueError(f"tokens must be (T, D), got {tuple(self.tokens.shape)}")
        if self.token_mask is not None and tuple(self.token_mask.shape) != self.tokens.shape[:1]:
            raise ValueError(
                f"token_mask {tuple(self.token_mask.shape)} does not match "
                f"tokens {tuple(self.tokens.shape)}"
            )


class EmbeddingStore:
    """Features of cells on disk in ``directory/cache.sqlite``.

    Args:
        directory: folder of the database (created on first use).
        dtype: "float16" (default, half the disk) or "float32" for stored floats;
            reads always return float32. A float16 row whose values would overflow
            is stored as float32 instead.

    The connection opens lazily and is dropped when pickled, so a store can be handed
    to DataLoader workers (each reconnects, also after a fork).
    """

    def __init__(self, directory: Path | str, *, dtype: str = "float16") -> None:
        if dtype not in DTYPES:
            raise ConfigError(f"cache dtype must be one of {DTYPES}, got {dtype!r}")
        self.directory = Path(directory)
        self.dtype = dtype
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.directory / DB_NAME

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.directory)!r}, dtype={self.dtype!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "dtype": self.dtype}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"], dtype=state["dtype"])  # type: ignore[misc]

    def close(self) -> None:
        """Close this process's connection (the next call reopens it)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        """This process's connection, opened (and the schema created) on first use."""
        if self._conn is None or self._pid != os.getpid():  # never reuse one across fork
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            _retry_locked(lambda: _setup(conn))
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, CachedItem]:
        """The stored items among ``keys`` (absent keys are simply left out)."""
        out: dict[str, CachedItem] = {}
        sql = "SELECT key, pooled, tokens, token_mask, shape, dtype FROM features"
        for row in self._select(sql, namespace, keys):
            out[row[0]] = _decode(*row[1:])
        return out

    def contains(
        self, namespace: str, keys: Iterable[str], *, with_tokens: bool = False
    ) -> set[str]:
        """Which of ``keys`` are stored (only those with tokens when ``with_tokens``)."""
        cond = " AND tokens IS NOT NULL" if with_tokens else ""
        return {row[0] for row in self._select("SELECT key FROM features", namespace, keys, cond)}

    def _select(
        self, sql: str, namespace: str, keys: Iterable[str], cond: str = ""
    ) -> Iterator[tuple]:
        """Rows of ``keys`` in ``namespace``, fetched a chunk at a time."""
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"{sql} WHERE namespace = ? AND key IN ({marks}){cond}"
            with self._lock:
                rows = self._db().execute(query, [namespace, *chunk]).fetchall()
            yield from rows

    def put_many(self, namespace: str, items: dict[str, CachedItem]) -> None:
        """Insert or replace ``items`` in one transaction (all rows appear at once, or none)."""
        if not items:
            return
        rows = [(namespace, key, *_encode(item, self.dtype)) for key, item in items.items()]
        sql = "INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?, ?)"
        with self._lock:
            self._transaction(lambda conn: conn.executemany(sql, rows))

    def shape(self, namespace: str) -> dict[str, list[int]] | None:
        """The stored shapes (``{"pooled": [D], "tokens": [T, D]}``) of one row, or None."""
        sql = "SELECT shape FROM features WHERE namespace = ? LIMIT 1"
        with self._lock:
            row = self._db().execute(sql, (namespace,)).fetchone()
        return None if row is None else json.loads(row[0])

    def count(self, namespace: str | None = None) -> int:
        """Number of stored rows, in one namespace or in all."""
        sql, args = _where("SELECT COUNT(*) FROM features", namespace)
        with self._lock:
            return int(self._db().execute(sql, args).fetchone()[0])

    def namespaces(self) -> list[str]:
        """Every namespace that holds rows."""
        with self._lock:
            rows = self._db().execute("SELECT DISTINCT namespace FROM features").fetchall()
        return sorted(r[0] for r in rows)

    def clear(self, namespace: str | None = None) -> None:
        """Delete one namespace's rows, or all rows, and give the freed pages back to disk."""
        sql, args = _where("DELETE FROM features", namespace)
        with self._lock:
            self._transaction(lambda conn: conn.execute(sql, args))
            conn = self._db()
            conn.executescript("PRAGMA incremental_vacuum")  # executescript steps to the end
            conn.execute("PRAGMA busy_timeout = 200")  # shrink the log only if nobody reads now
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                conn.execute("PRAGMA busy_timeout = 60000")

    def size_bytes(self) -> int:
        """Bytes on disk: the database plus its write-ahead log and shared-memory index."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            path = self.directory / (DB_NAME + suffix)
            if path.exists():
                total += path.stat().st_size
        return total

    def _transaction(self, work: Any) -> None:
        """Run ``work(conn)`` inside BEGIN IMMEDIATE … COMMIT, rolling back on error."""
        conn = self._db()
        _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            work(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _setup(conn: sqlite3.Connection) -> None:
    """Per-connection settings and the table (idempotent; several processes may race here)."""
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect on a new database
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL keeps commits atomic either way
    conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}").fetchall()
    conn.execute(_SCHEMA)


def _retry_locked(action: Any, attempts: int = 50) -> Any:
    """Run ``action``, retrying briefly when SQLite reports a lock it did not wait for."""
    for attempt in range(attempts):
        try:
            return action()
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _where(sql: str, namespace: str | None) -> tuple[str, tuple]:
    return (sql, ()) if namespace is None else (f"{sql} WHERE namespace = ?", (namespace,))


def _encode(item: CachedItem, dtype: str) -> tuple:
    """An item as ``(pooled, tokens, token_mask, shape, dtype)`` column values."""
    floats = [item.pooled] if item.tokens is None else [item.pooled, item.tokens]
    if dtype == "float16" and any(t.detach().abs().max() > _F16_MAX for t in floats if t.numel()):
        dtype = "float32"  # would overflow to inf in float16
    shape: dict[str, list[int]] = {"pooled": list(item.pooled.shape)}
    tokens = mask = None
    if item.tokens is not None:
        shape["tokens"] = list(item.tokens.shape)
        tokens = _blob(item.tokens, dtype)
        real = item.token_mask if item.token_mask is not None else torch.ones(len(item.tokens))
        mask = real.detach().to("cpu", torch.uint8).numpy().tobytes()
    return _blob(item.pooled, dtype), tokens, mask, json.dumps(shape), dtype


def _blob(t: torch.Tensor, dtype: str) -> bytes:
    return t.detach().to("cpu", getattr(torch, dtype)).contiguous().numpy().tobytes()


def _decode(
    pooled: bytes, tokens: bytes | None, mask: bytes | None, shape: str, dtype: str
) -> CachedItem:
    """Column values back into a float32 :class:`CachedItem`."""
    dims = json.loads(shape)
    if tokens is None:
        return CachedItem(_tensor(pooled, dtype, dims["pooled"]))
    flags = np.frombuffer(mask or b"", dtype=np.uint8).astype(bool)  # a writable copy
    return CachedItem(
        _tensor(pooled, dtype, dims["pooled"]),
        _tensor(tokens, dtype, dims["tokens"]),
        torch.from_numpy(flags),
    )


def _tensor(blob: bytes, dtype: str, shape: list[int]) -> torch.Tensor:
    arr = np.frombuffer(blob, dtype=np.dtype(dtype)).astype(np.float32)  # a writable copy
    return torch.from_numpy(arr.reshape(shape))
