"""Image and audio corruptions: decode a media cell, then damage its pixels or samples.

Every operation is pure: it takes the decoded array and a generator and returns a new
array, so the same generator state always gives the same corruption. Images are uint8
``(H, W)`` (single-channel sources) or ``(H, W, 3)`` arrays of the original size; audio
is float32 ``(channels, n)`` at the clip's own sample rate, never clipped.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from crossfuse.data.image import decode_image
from crossfuse.data.media import resolve_media

OCCLUSION_FILL = 128  # mid-grey of the occlusion patch
SILENT_NOISE_RMS = 0.01  # white-noise RMS for a silent channel (no power to set an SNR from)
_IN_MEMORY = (bytes, bytearray, memoryview, Image.Image, np.ndarray)
# What Image.open can raise on a bad file; decode_image turns these into CellError.
_OPEN_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error,
    Image.DecompressionBombError,
)  # fmt: skip


def load_image_pixels(cell: Any, base_dir: Path | None = None) -> np.ndarray:
    """Decode an image cell into uint8 pixels of its original size.

    Single-channel sources (grayscale, bilevel, 16-bit) give ``(H, W)`` so that noise is
    not averaged away when a grayscale processor reads the result; anything else gives
    ``(H, W, 3)``.

    Raises:
        CellError: the cell is empty, the file is missing, or it cannot be decoded.
    """
    if not isinstance(cell, _IN_MEMORY):
        cell = resolve_media(cell, base_dir)
    channels = 1 if _single_channel(cell) else 3
    return np.array(decode_image(cell, channels), dtype=np.uint8)  # (H, W) or (H, W, 3)


def _single_channel(source: Any) -> bool:
    """True when the source holds one colour band (an alpha band aside)."""
    if isinstance(source, np.ndarray):
        return source.ndim == 2 or (source.ndim == 3 and source.shape[2] == 1)
    if isinstance(source, Image.Image):
        return _grey_bands(source.getbands())
    in_memory = isinstance(source, (bytes, bytearray, memoryview))
    opened = io.BytesIO(bytes(source)) if in_memory else source
    try:
        with Image.open(opened) as img:  # lazy: reads the header only
            return _grey_bands(img.getbands())
    except _OPEN_ERRORS:
        return False  # decode_image reports the problem


def _grey_bands(bands: tuple[str, ...]) -> bool:
    colour = [b for b in bands if b != "A"]
    return len(colour) == 1 and colour[0] != "P"


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussian_noise(pixels: np.ndarray, rng: np.random.Generator, *, sigma: float) -> np.ndarray:
    """Add zero-mean Gaussian noise of std ``sigma`` × 255 to every pixel value, clipped."""
    noise = rng.normal(0.0, sigma * 255.0, size=pixels.shape)  # (H, W[, 3])
    return _to_uint8(pixels.astype(np.float64) + noise)


def blur(pixels: np.ndarray, rng: np.random.Generator, *, radius: float) -> np.ndarray:
    """Gaussian blur of radius ``radius`` × the shorter side (at least 1 pixel)."""
    del rng  # deterministic; the generator is part of the common signature
    px = max(1.0, radius * min(pixels.shape[:2]))
    img = Image.fromarray(np.ascontiguousarray(pixels))
    return np.array(img.filter(ImageFilter.GaussianBlur(px)), dtype=np.uint8)


def occlusion(pixels: np.ndarray, rng: np.random.Generator, *, area: float) -> np.ndarray:
    """Fill a random patch covering ``area`` of the image with mid-grey.

    The patch is a square where the image allows one; on a very elongated image it is
    as tall (or wide) as the image and long enough to still cover ``area``.
    """
    h, w = pixels.shape[:2]
    target = area * h * w
    side = max(1, round(math.sqrt(target)))
    ph = min(h, side)
    pw = min(w, max(1, round(target / ph)))
    ph = min(h, max(1, round(target / pw)))  # re-balance when the width was capped
    y0 = int(rng.integers(0, h - ph + 1))
    x0 = int(rng.integers(0, w - pw + 1))
    out = pixels.copy()
    out[y0 : y0 + ph, x0 : x0 + pw] = OCCLUSION_FILL
    return out


def contrast(pixels: np.ndarray, rng: np.random.Generator, *, factor: float) -> np.ndarray:
    """Blend every pixel toward the image mean: ``mean + factor × (pixel − mean)``."""
    del rng  # deterministic
    x = pixels.astype(np.float64)
    mean = float(x.mean())
    return _to_uint8(mean + factor * (x - mean))


def white_noise(x: np.ndarray, sr: int, rng: np.random.Generator, *, snr_db: float) -> np.ndarray:
    """Add white Gaussian noise at exactly ``snr_db`` dB below each channel's power.

    The noise is rescaled to its target power, so the SNR holds for short clips too. A
    silent channel gets noise of RMS :data:`SILENT_NOISE_RMS`.
    """
    del sr
    signal = x.astype(np.float64)  # (C, n)
    noise = rng.standard_normal(signal.shape)  # (C, n)
    power = np.mean(signal**2, axis=1, keepdims=True)  # (C, 1)
    target = np.where(power > 0, power / 10.0 ** (snr_db / 10.0), SILENT_NOISE_RMS**2)
    noise *= np.sqrt(target / np.maximum(np.mean(noise**2, axis=1, keepdims=True), 1e-30))
    return (signal + noise).astype(np.float32)


def dropout(
    x: np.ndarray, sr: int, rng: np.random.Generator, *, fraction: float, segment_ms: float
) -> np.ndarray:
    """Zero random ``segment_ms`` segments (all channels) covering ``fraction`` of the clip.

    The clip is cut into consecutive segments and ``round(fraction × count)`` of them,
    at least one, are silenced.
    """
    n = x.shape[-1]
    seg = max(1, round(segment_ms / 1000.0 * sr))
    count = math.ceil(n / seg)
    k = min(count, max(1, round(fraction * count)))
    out = x.copy()
    for s in rng.choice(count, size=k, replace=False):
        out[:, int(s) * seg : (int(s) + 1) * seg] = 0.0
    return out


def time_shift(
    x: np.ndarray, sr: int, rng: np.random.Generator, *, min_shift: float, max_shift: float
) -> np.ndarray:
    """Shift the clip by a random ±(``min_shift``–``max_shift``) of its length, zero-filled.

    The direction is random; samples pushed past either end are dropped (no wrapping),
    so the length is unchanged.
    """
    del sr
    n = x.shape[-1]
    k = round(rng.uniform(min_shift, max_shift) * n) * (1 if rng.random() < 0.5 else -1)
    out = np.zeros_like(x)
    if k >= n or -k >= n:
        return out
    if k > 0:
        out[:, k:] = x[:, : n - k]
    elif k < 0:
        out[:, :k] = x[:, -k:]
    else:
        out[:] = x
    return out
