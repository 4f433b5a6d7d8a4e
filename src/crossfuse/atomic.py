"""Atomic file writes: a reader sees the old file or the whole new one, never a part."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(target: str | Path, *, prefix: str | None = None) -> Iterator[BinaryIO]:
    """A binary file to write that appears at ``target`` only when the block ends cleanly.

    It is a temp file beside ``target`` (``<prefix><random>.tmp``, default prefix
    ``.<name>.``), fsynced and renamed into place on exit, and removed if anything fails.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=prefix or f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(target: str | Path, data: str | bytes, *, prefix: str | None = None) -> Path:
    """Write ``data`` (text as UTF-8) to ``target`` atomically (see :func:`atomic_file`)."""
    with atomic_file(target, prefix=prefix) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(target)
