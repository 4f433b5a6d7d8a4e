"""Content keys for cells and fingerprints for encoders and processors.

A cached feature is valid exactly while (encoder weights and options, processor state,
cell content) are unchanged. Cells are keyed by *content*, not by name: a media cell's
key is the sha256 of the file's bytes, so editing a file in place changes its key and
moving an unchanged file keeps it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from crossfuse.data.media import is_missing, resolve_media
from crossfuse.errors import CellError, ConfigError

FORMAT_VERSION = 1  # bump when the stored feature layout changes: old namespaces go stale
MEDIA_MODALITIES = ("image", "audio")
_CHUNK = 1 << 20  # bytes read at a time when hashing a file
# A file modified this recently may be rewritten again within the same mtime tick
# (same size, same mtime_ns, new bytes), so its digest is not memoised ("racy" files).
_RACY_NS = 2_000_000_000


def cell_key(cell: Any, *, modality: str, base_dir: Path | None) -> str | None:
    """The content hash (sha256 hex) of one cell, or None when the cell is missing/unreadable.

    Text cells hash their UTF-8 string. Media cells hash the file's bytes (paths are
    resolved against ``base_dir``); in-memory media (bytes, uint8 arrays, PIL images,
    ``(waveform, sample_rate)`` tuples) hash their content. Never raises for bad cells.

    Raises:
        ConfigError: ``modality`` is not text, image or audio.
    """
    if modality == "text":
        return None if is_missing(cell) else _sha256(str(cell).encode("utf-8"))
    if modality not in MEDIA_MODALITIES:
        raise ConfigError(f"the embedding cache keys text, image and audio cells, not {modality}")
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return _sha256(bytes(cell)) if len(cell) else None
    if isinstance(cell, np.ndarray):
        return _array_key(cell)
    if isinstance(cell, Image.Image):
        return _sha256(f"pil|{cell.mode}|{cell.size}|".encode() + cell.tobytes())
    if isinstance(cell, tuple) and len(cell) == 2 and isinstance(cell[0], np.ndarray):
        inner = _array_key(cell[0])
        return None if inner is None else _sha256(f"wave|{cell[1]}|{inner}".encode())
    try:
        source = resolve_media(cell, base_dir)  # a file, or a tar shard member's bytes
        return _sha256(source) if isinstance(source, bytes) else file_digest(source)
    except (CellError, OSError, ValueError):
        return None


def file_digest(path: Path) -> str:
    """sha256 hex of a file's bytes, memoised per ``(path, inode, size, mtime_ns)``.

    Files modified in the last two seconds are re-hashed on every call (see ``_RACY_NS``).

    Raises:
        OSError: the file cannot be read.
    """
    resolved = os.path.abspath(path)
    st = os.stat(resolved)
    if time.time_ns() - st.st_mtime_ns < _RACY_NS:
        return _hash_file(resolved)
    return _memo_digest(resolved, st.st_ino, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=1 << 18)
def _memo_digest(path: str, inode: int, size: int, mtime_ns: int) -> str:
    """The memoised digest; the stat fields are part of the cache key only."""
    return _hash_file(path)


def _hash_file(path: str) -> str:
    """Stream the file through sha256 in chunks (big files never sit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _array_key(arr: np.ndarray) -> str | None:
    """Hash of an array's dtype, shape and bytes; None for an empty array."""
    if arr.size == 0:
        return None
    header = f"array|{arr.dtype.str}|{arr.shape}|".encode()
    return _sha256(header + np.ascontiguousarray(arr).tobytes())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(obj: Any) -> str:
    """Stable sha256 hex of JSON-able data (dict keys sorted, so order does not matter).

    Also accepts paths, sets, tuples, dataclasses and numpy scalars/arrays.

    Raises:
        TypeError: ``obj`` holds something with no stable JSON form.
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    return _sha256(text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"cannot fingerprint a {type(value).__name__}: {value!r:.80}")


def module_fingerprint(module: torch.nn.Module, extra: dict[str, Any]) -> str:
    """Hash of a module's class, ``extra`` options, and every parameter and buffer.

    Each tensor contributes its name, shape, dtype and raw bytes, so any change to the
    weights (fine-tuning, a different checkpoint) gives a different fingerprint.
    """
    cls = type(module)
    digest = hashlib.sha256(f"{cls.__module__}.{cls.__qualname__}|".encode())
    digest.update(fingerprint(extra).encode())
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in tensors:
        t = tensor.detach().to("cpu").contiguous().reshape(-1)  # (N,)
        digest.update(f"|{name}|{tuple(tensor.shape)}|{t.dtype}|".encode())
        if t.numel():
            digest.update(t.view(torch.uint8).numpy().data)  # raw bytes, no float formatting
    return digest.hexdigest()


def namespace(encoder_fp: str, processor_state: dict[str, Any]) -> str:
    """The cache namespace: fingerprint of the encoder fingerprint and the processor state."""
    return fingerprint(
        {"format": FORMAT_VERSION, "encoder": encoder_fp, "processor": processor_state}
    )
