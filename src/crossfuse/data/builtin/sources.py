"""Reading and fetching the raw sources of AV-MNIST: MNIST (IDX files) and FSDD (WAV files).

Everything here works offline on local folders; ``download``/``fetch_*`` are only used
when the caller asks for it, and take a ``base_url`` so they can be tested on ``file://``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossfuse.errors import ConfigError, CrossfuseError, TableError

FSDD_REF = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"  # the commit the shared copy came from
FSDD_BASE_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive"
MNIST_BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist"
MNIST_MD5: dict[str, str] = {  # the well-known md5 sums of the original LeCun files
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# IDX type codes → big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z][A-Za-z0-9-]*)_(\d+)\.wav$")


@dataclass(frozen=True)
class FsddRecording:
    """One FSDD clip, described by its file name ``{digit}_{speaker}_{index}.wav``."""

    path: Path  # the WAV file
    digit: int  # the spoken digit, 0-9
    speaker: str  # the speaker's name, e.g. "theo"
    index: int  # the take number (0-49 in FSDD; 0-4 are the official test takes)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a numpy array.

    Raises:
        TableError: the file is missing, truncated, or not an IDX file; the message names it.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise TableError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        magic = int.from_bytes(raw[:4].ljust(4, b"\x00"), "big")
        raise TableError(
            f"{path} is not an IDX file: bad magic number {magic} "
            "(MNIST uses 2051 for images and 2049 for labels)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise TableError(f"{path}: IDX header truncated (needs {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise TableError(
            f"{path}: IDX dimensions {dims} need {expected} data bytes, found {len(raw) - header}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))  # native byte order, writable copy


def _find_idx(folder: Path, stem: str) -> Path | None:
    """The first existing variant of an MNIST file name (``-`` or ``.``, gz or raw)."""
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in (".gz", ""):
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return None


def find_mnist_files(folder: str | Path) -> tuple[Path, Path]:
    """The (images, labels) IDX files in ``folder``: the training set if present, else t10k.

    Raises:
        ConfigError: the folder does not exist or holds neither set.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"MNIST folder not found: {folder}")
    for prefix in ("train", "t10k"):
        images = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        if images and labels:
            return images, labels
    raise ConfigError(
        f"no MNIST files in {folder}: expected train-images-idx3-ubyte.gz + "
        "train-labels-idx1-ubyte.gz or t10k-images-idx3-ubyte.gz + t10k-labels-idx1-ubyte.gz"
    )


def load_mnist(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST from ``folder``: images uint8 (N, 28, 28) and labels uint8 (N,).

    Uses the training files when present, else the t10k (test) files.

    Raises:
        ConfigError: no MNIST files found. TableError: malformed or inconsistent files.
    """
    images_path, labels_path = find_mnist_files(folder)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise TableError(f"{images_path}: expected uint8 images (N, 28, 28), got {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8 or len(labels) != len(images):
        raise TableError(
            f"{labels_path}: expected {len(images)} uint8 labels, got shape {labels.shape}"
        )
    if labels.size and labels.max() > 9:
        raise TableError(f"{labels_path}: labels must be digits 0-9, found {labels.max()}")
    return images, labels


def list_fsdd(folder: str | Path) -> list[FsddRecording]:
    """List the FSDD recordings in ``folder`` (or its ``recordings/`` subfolder).

    Files whose names do not match ``{digit}_{speaker}_{index}.wav`` are ignored. The
    list is sorted by (digit, speaker, index) so it is the same on every machine.

    Raises:
        ConfigError: the folder does not exist or holds no matching recording.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"FSDD folder not found: {folder}")
    if (folder / "recordings").is_dir():
        folder = folder / "recordings"
    found = []
    for path in folder.iterdir():
        match = _FSDD_NAME.match(path.name)
        if match and path.is_file():
            found.append(FsddRecording(path, int(match[1]), match[2], int(match[3])))
    if not found:
        raise ConfigError(
            f"no FSDD recordings found in {folder} (expected files named "
            "{digit}_{speaker}_{index}.wav, e.g. 7_jackson_32.wav)"
        )
    return sorted(found, key=lambda r: (r.digit, r.speaker, r.index))


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | Path, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically (temp file + rename), checking ``md5``.

    An existing ``dest`` with the right md5 (or any, when ``md5`` is None) is kept.

    Raises:
        CrossfuseError: the download failed or its md5 does not match; no file is left.
    """
    dest = Path(dest)
    if dest.is_file() and (md5 is None or _md5(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        if md5 is not None and (actual := _md5(tmp)) != md5:
            raise CrossfuseError(f"download of {url} is corrupt: md5 {actual}, expected {md5}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as exc:
        raise CrossfuseError(f"cannot download {url}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest


def fetch_fsdd(
    cache_dir: str | Path, *, base_url: str = FSDD_BASE_URL, ref: str = FSDD_REF
) -> Path:
    """Download the FSDD archive at ``ref`` and extract its recordings; return the folder.

    The result is ``cache_dir/fsdd`` with ``recordings/*.wav``; a finished extraction
    (marked by ``.complete``) is reused.
    """
    target = Path(cache_dir) / "fsdd"
    if (target / ".complete").is_file():
        return target
    archive = download(f"{base_url.rstrip('/')}/{ref}.zip", Path(cache_dir) / f"fsdd-{ref}.zip")
    recordings = target / "recordings"
    recordings.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                parts = member.filename.rstrip("/").split("/")
                # Only {top}/recordings/{name}.wav; the base name alone, so no path escapes.
                if len(parts) >= 2 and parts[-2] == "recordings" and _FSDD_NAME.match(parts[-1]):
                    (recordings / parts[-1]).write_bytes(zf.read(member))
    except zipfile.BadZipFile as exc:
        raise CrossfuseError(f"cannot extract FSDD archive {archive}: {exc}") from exc
    list_fsdd(target)  # fails clearly when the archive held no recordings
    (target / ".complete").write_text(ref + "\n")
    return target


def fetch_mnist(
    cache_dir: str | Path,
    *,
    base_url: str = MNIST_BASE_URL,
    md5: Mapping[str, str | None] = MNIST_MD5,
) -> Path:
    """Download the MNIST IDX gz files named in ``md5`` into ``cache_dir/mnist``.

    Args:
        cache_dir: where to keep the files.
        base_url: the folder URL the files are fetched from.
        md5: file name → expected md5 (None skips the check).
    """
    target = Path(cache_dir) / "mnist"
    for name, checksum in md5.items():
        download(f"{base_url.rstrip('/')}/{name}", target / name, checksum)
    return target


def resolve_sources(
    fsdd_dir: str | Path | None,
    mnist_dir: str | Path | None,
    *,
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[Path, Path]:
    """The (FSDD, MNIST) folders to use: the given ones, else downloaded into the cache.

    Raises:
        ConfigError: a folder is not given and ``download`` is False.
    """
    for name, given in (("fsdd_dir", fsdd_dir), ("mnist_dir", mnist_dir)):
        if given is None and not download:
            raise ConfigError(f"{name} not given: pass the local folder or download=True")
    cache = Path(cache_dir or Path.home() / ".cache" / "crossfuse" / "sources").expanduser()
    fsdd = Path(fsdd_dir) if fsdd_dir is not None else fetch_fsdd(cache)
    mnist = Path(mnist_dir) if mnist_dir is not None else fetch_mnist(cache)
    return fsdd.expanduser().resolve(), mnist.expanduser().resolve()
