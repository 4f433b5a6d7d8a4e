"""Reading audio files and shaping waveforms: decode, down-mix, resample, crop/pad."""

from __future__ import annotations

import functools
import io
import math
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf

from crossfuse.data.media import media_name, resolve_media
from crossfuse.errors import CellError


def _check_wav_length(f: BinaryIO, size: int) -> None:
    """Raise if a RIFF/RIFX WAVE file declares more sample bytes than it holds.

    libsndfile quietly reads whatever is there, so a half-copied file would otherwise
    pass as a shorter clip. Non-RIFF content is left to soundfile.
    """
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return
    endian = "<" if head[:4] == b"RIFF" else ">"
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        chunk_id, chunk_size = struct.unpack(endian + "4sI", f.read(8))
        body = pos + 8
        if chunk_id == b"data":
            have = size - body
            if chunk_size != 0xFFFFFFFF and chunk_size > have:  # 0xFFFFFFFF: streamed, unknown
                raise CellError(
                    f"truncated audio file: header says {chunk_size} bytes of samples, "
                    f"file has {have}"
                )
            return
        if body + chunk_size > size:
            raise CellError("truncated audio file: it ends inside its header, before the samples")
        pos = body + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes


def decode_audio(source: str | Path | bytes | bytearray | memoryview) -> tuple[np.ndarray, int]:
    """Decode an audio file (path or raw bytes) with soundfile.

    Returns:
        ``(samples (channels, n) float32, sample_rate)``.

    Raises:
        CellError: undecodable content, a truncated WAV, no samples, or non-finite values.
    """
    is_path = isinstance(source, (str, Path))
    where = media_name(source)  # a path, a shard member's shard::member, or None
    try:
        if is_path:
            with open(source, "rb") as f:
                _check_wav_length(f, Path(source).stat().st_size)
            data, sr = sf.read(str(source), dtype="float32", always_2d=True)
        else:
            raw = bytes(source)
            _check_wav_length(io.BytesIO(raw), len(raw))
            data, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except CellError as err:
        raise CellError(err.reason, file=where) from None
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, EOFError, OSError) as err:
        cause = getattr(err, "error_string", None) or str(err) or type(err).__name__
        raise CellError(f"cannot decode audio: {cause.strip()}", file=where) from None
    if data.shape[0] == 0:
        raise CellError("no audio samples", file=where)
    if not np.isfinite(data).all():
        raise CellError("audio contains NaN or infinite samples", file=where)
    return np.ascontiguousarray(data.T), int(sr)  # (channels, n)


def to_mono(x: np.ndarray) -> np.ndarray:
    """Average ``(channels, n)`` to ``(n,)`` float32; a 1-D input is returned as float32."""
    x = np.asarray(x)
    mono = x if x.ndim == 1 else x.mean(axis=0)
    return mono.astype(np.float32, copy=False)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis (``scipy.signal.resample_poly``)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {target_sr}")
    if orig_sr == target_sr:
        return np.asarray(x, dtype=np.float32)
    g = math.gcd(int(orig_sr), int(target_sr))
    from scipy.signal import resample_poly  # imported on use: 0.8 s at CLI start-up

    up, down = int(target_sr) // g, int(orig_sr) // g
    x = np.asarray(x)
    h = _lowpass(up, down)
    if np.issubdtype(x.dtype, np.floating):
        h = h.astype(x.dtype, copy=False)  # as resample_poly does with its own filter
    out = resample_poly(x, up, down, axis=-1, window=h)
    return out.astype(np.float32, copy=False)


@functools.lru_cache(maxsize=32)
def _lowpass(up: int, down: int) -> np.ndarray:
    """resample_poly's default anti-aliasing filter, designed once per rate pair.

    Designing it (``firwin`` with a Kaiser window) costs as much as filtering a short
    clip, and a column of clips at one rate needs the same filter every time.
    """
    from scipy.signal import firwin

    max_rate = max(up, down)
    h = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    h.setflags(write=False)
    return h


def fix_length(
    x: np.ndarray, n: int, mode: str = "center", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Crop or zero-pad ``x (..., samples)`` to exactly ``n`` samples.

    ``mode`` places the kept window (or the clip inside the padding): ``"start"`` at
    the beginning, ``"center"`` in the middle, ``"random"`` at an offset drawn from ``rng``.
    """
    if mode not in ("center", "start", "random"):
        raise ValueError(f"fix_length mode must be center, start or random, got {mode!r}")
    length = x.shape[-1]
    extra = abs(length - n)
    if mode == "start":
        offset = 0
    elif mode == "center":
        offset = extra // 2
    else:
        offset = int((rng or np.random.default_rng()).integers(0, extra + 1))
    if length >= n:
        return x[..., offset : offset + n]
    out = np.zeros((*x.shape[:-1], n), dtype=x.dtype)
    out[..., offset : offset + length] = x
    return out


def array_cell(cell: tuple) -> tuple[np.ndarray, int]:
    """Validate an ``(array, sample_rate)`` cell → ``(channels, n)`` float32 and rate."""
    if len(cell) != 2:
        raise CellError("audio tuple must be (samples, sample_rate)")
    array, sr = cell
    if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or sr <= 0:
        raise CellError(f"audio sample rate must be a positive integer, got {sr!r}")
    try:
        x = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise CellError(f"audio samples are not numeric: {err}") from None
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise CellError(f"audio array must be (samples,) or (channels, samples), got {x.shape}")
    if x.shape[0] > x.shape[1]:
        raise CellError(
            f"audio array of shape {x.shape} has more channels than samples; "
            "pass it as (channels, samples)"
        )
    if x.shape[1] == 0:
        raise CellError("no audio samples")
    if not np.isfinite(x).all():
        raise CellError("audio contains NaN or infinite samples")
    return x, int(sr)


def load_audio_cell(cell: Any, base_dir: Path | None = None) -> tuple[np.ndarray, int]:
    """A path, file bytes or ``(array, sample_rate)`` cell → ``(channels, n)`` float32, rate."""
    if isinstance(cell, tuple):
        return array_cell(cell)
    if isinstance(cell, bytes | bytearray | memoryview):
        if len(cell) == 0:
            raise CellError("audio bytes are empty")
        return decode_audio(cell)
    return decode_audio(resolve_media(cell, base_dir))
