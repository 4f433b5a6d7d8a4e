"""Image cells: decode any common file into "L"/"RGB", then resize, augment and normalise.

Decoding is strict (a full decode, so a truncated file fails here, not mid-training) and
every Pillow failure becomes a :class:`~crossfuse.errors.CellError` with a short reason.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from crossfuse.data.media import media_name, resolve_media
from crossfuse.data.processor import ColumnProcessor, register_processor, stack_fixed
from crossfuse.errors import CellError, ConfigError

RESIZE_MODES = ("pad", "stretch", "center-crop")
NORMALIZE_MODES = ("unit", "imagenet", "tflite", "none")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# Everything Pillow raises on a bad file; UnidentifiedImageError is an OSError.
_PIL_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error,
    Image.DecompressionBombError,
)  # fmt: skip
_BILINEAR = Image.Resampling.BILINEAR


@dataclass
class ImageConfig:
    """How image cells become (channels, size, size) float tensors."""

    size: int = 64  # output height and width in pixels
    channels: int = 3  # 1 = grayscale ("L"), 3 = RGB
    resize: str = "pad"  # pad (keep aspect, letterbox) | stretch | center-crop
    normalize: str = "unit"  # unit ([-1, 1]) | imagenet | tflite ((p - 127) / 128) | none
    background: int = 0  # gray level 0-255 of letterbox bars and rotation corners
    augment: bool = False  # random crop/rotation/jitter when training
    crop_scale: tuple[float, float] = (0.8, 1.0)  # area fraction kept by the random crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect-ratio range of the random crop
    rotation: float = 10.0  # max rotation in degrees, either way
    brightness: float = 0.2  # brightness factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2  # contrast factor drawn from [1 - c, 1 + c]
    hflip: bool = False  # random horizontal flip; off: digits and text are not symmetric

    def __post_init__(self) -> None:
        self.crop_scale = _pair("crop_scale", self.crop_scale)  # JSON gives lists
        self.crop_ratio = _pair("crop_ratio", self.crop_ratio)
        for name in ("size", "channels", "background"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"image.{name} must be an integer, got {value!r}")
        if not 1 <= self.size <= 4096:
            raise ConfigError(f"image.size must be between 1 and 4096, got {self.size}")
        if self.channels not in (1, 3):
            raise ConfigError(
                f"image.channels must be 1 (grayscale) or 3 (RGB), got {self.channels}"
            )
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"image.resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.normalize not in NORMALIZE_MODES:
            raise ConfigError(
                f"image.normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}"
            )
        if not 0 <= self.background <= 255:
            raise ConfigError(f"image.background must be 0-255, got {self.background}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"image.crop_scale must satisfy 0 < low <= high <= 1, got {lo, hi}")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise ConfigError(f"image.crop_ratio must satisfy 0 < low <= high, got {lo, hi}")
        if not 0 <= self.rotation <= 180:
            raise ConfigError(f"image.rotation must be 0-180 degrees, got {self.rotation}")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"image.{name} must be in [0, 1), got {getattr(self, name)}")


def _pair(name: str, value: Any) -> tuple[float, float]:
    """Validate a (low, high) pair of numbers."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"image.{name} must be a pair of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError(f"image.{name} must be finite, got {value!r}")
    return lo, hi


def decode_image(source: Any, channels: int = 3) -> Image.Image:
    """Decode a path, bytes, PIL image or uint8 array into a fully loaded "L"/"RGB" image.

    EXIF orientation is applied, animated images give their first frame, transparency
    is composited onto white, and 16/32-bit images have their value range stretched
    to 0-255.

    Raises:
        CellError: ``"cannot decode image: <cause>"`` for anything Pillow cannot read.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    file = media_name(source)  # a path, a shard member's shard::member, or None
    try:
        if isinstance(source, np.ndarray):
            img = _from_array(source)
        elif isinstance(source, Image.Image):
            img = source
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise CellError("cannot decode image: no bytes")
            img = Image.open(io.BytesIO(bytes(source)))
        else:
            with Image.open(source) as opened:
                opened.load()
                return _finish(opened, channels)
        img.load()  # full decode: truncated data fails here
        return _finish(img, channels)
    except UnidentifiedImageError:
        raise CellError("cannot decode image: not a recognised image format", file=file) from None
    except Image.DecompressionBombError:
        reason = "cannot decode image: too many pixels (decompression bomb protection)"
        raise CellError(reason, file=file) from None
    except _PIL_ERRORS as err:
        cause = str(err).strip() or type(err).__name__
        raise CellError(f"cannot decode image: {cause[:150]}", file=file) from None


def _from_array(arr: np.ndarray) -> Image.Image:
    """A uint8 (H, W) or (H, W, 1|3|4) array as a PIL image."""
    ok_shape = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))
    if arr.dtype != np.uint8 or not ok_shape or arr.size == 0:
        raise CellError(
            "cannot decode image: expected a uint8 array of shape (H, W) or (H, W, C) with "
            f"C in 1, 3, 4; got {arr.dtype} {arr.shape}"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(arr))


def _finish(img: Image.Image, channels: int) -> Image.Image:
    """Orient the (loaded, first-frame) image and convert it to the target mode."""
    img = ImageOps.exif_transpose(img)  # a copy, never the caller's image
    target = "L" if channels == 1 else "RGB"
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;"):
        return _stretch_to_8bit(img).convert(target)
    if "A" in mode or "a" in mode or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert(target)
    if mode == target:
        return img.copy()
    if mode == "CMYK" and target == "L":
        img = img.convert("RGB")
    return img.convert(target)


def _stretch_to_8bit(img: Image.Image) -> Image.Image:
    """Map a high-bit-depth image's actual value range onto 0-255 (a flat one is clipped)."""
    a = np.asarray(img).astype(np.float64)  # (H, W)
    finite = np.isfinite(a)
    if not finite.any():
        return Image.new("L", img.size, 0)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    a = np.where(finite, a, lo)
    a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.clip(a, 0, 255)
    return Image.fromarray(np.rint(a).astype(np.uint8), mode="L")


def resize_image(img: Image.Image, size: int, mode: str, background: int = 0) -> Image.Image:
    """Resize to ``size`` x ``size``: letterbox ("pad"), "stretch" or "center-crop"."""
    w, h = img.size
    if mode == "stretch":
        return img.resize((size, size), _BILINEAR)
    if mode == "center-crop":
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        return img.resize((size, size), _BILINEAR, box=box)
    if mode != "pad":
        raise ValueError(f"unknown resize mode {mode!r}")
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new(img.mode, (size, size), _fill(img.mode, background))
    canvas.paste(img.resize((nw, nh), _BILINEAR), ((size - nw) // 2, (size - nh) // 2))
    return canvas


def _fill(mode: str, level: int) -> int | tuple[int, int, int]:
    return level if mode == "L" else (level, level, level)


def _random_crop(img: Image.Image, cfg: ImageConfig, rng: np.random.Generator) -> Image.Image:
    """Crop a random area fraction and aspect ratio (a random resized crop, before resize)."""
    w, h = img.size
    area = w * h * rng.uniform(*cfg.crop_scale)
    ratio = math.exp(rng.uniform(math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])))
    cw = min(w, max(1, round(math.sqrt(area * ratio))))
    ch = min(h, max(1, round(math.sqrt(area / ratio))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return img.crop((x0, y0, x0 + cw, y0 + ch))


def _jitter(x: np.ndarray, cfg: ImageConfig, rng: np.random.Generator) -> np.ndarray:
    """Random brightness and contrast on pixels in [0, 1]; ``x`` is (C, H, W)."""
    if cfg.brightness > 0:
        x = x * rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    if cfg.contrast > 0:
        mean = float(x.mean())
        x = (x - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    return np.clip(x, 0.0, 1.0, dtype=np.float32)


def normalize_pixels(x: np.ndarray, mode: str) -> np.ndarray:
    """Normalise (C, H, W) pixels in [0, 1] as the chosen backbone expects."""
    if mode == "unit":
        return (x - 0.5) / 0.5
    if mode == "tflite":
        return (x * 255.0 - 127.0) / 128.0
    if mode == "none":
        return x
    if mode != "imagenet":
        raise ValueError(f"unknown normalize mode {mode!r}")
    if x.shape[0] == 1:  # grayscale: the average of the RGB statistics
        mean, std = np.mean(_IMAGENET_MEAN), np.mean(_IMAGENET_STD)
    else:
        mean, std = np.array(_IMAGENET_MEAN)[:, None, None], np.array(_IMAGENET_STD)[:, None, None]
    return ((x - mean) / std).astype(np.float32)


@register_processor("image")
class ImageProcessor(ColumnProcessor):
    """Image column → (C, size, size) float32 tensors, with optional training augmentation."""

    config_class = ImageConfig

    def __init__(self, config: ImageConfig | None = None) -> None:
        self.config = config or ImageConfig()

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every processed cell."""
        return (self.config.channels, self.config.size, self.config.size)

    def process(
        self,
        cell: Any,
        *,
        base_dir: Path | None = None,
        train: bool = False,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """Decode one cell (path, bytes, PIL image or uint8 array) into a (C, H, W) tensor.

        Raises:
            CellError: the file is missing/empty or cannot be decoded.
        """
        cfg = self.config
        if not isinstance(cell, (bytes, bytearray, memoryview, Image.Image, np.ndarray)):
            cell = resolve_media(cell, base_dir)
        img = decode_image(cell, cfg.channels)
        augment = train and cfg.augment
        if augment:
            rng = rng if rng is not None else np.random.default_rng()
            img = _random_crop(img, cfg, rng)
        img = resize_image(img, cfg.size, cfg.resize, cfg.background)
        if augment:
            if cfg.hflip and rng.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if cfg.rotation > 0:
                angle = float(rng.uniform(-cfg.rotation, cfg.rotation))
                img = img.rotate(angle, _BILINEAR, fillcolor=_fill(img.mode, cfg.background))
        x = np.asarray(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)  # (C, H, W)
        if augment:
            x = _jitter(x, cfg, rng)
        x = normalize_pixels(x, cfg.normalize)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def collate(self, items: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Stack into ``pixels`` (B, C, H, W) and ``present`` (B,)."""
        return stack_fixed(items, self.output_shape, "pixels")

    def get_state(self) -> dict[str, Any]:
        """The config as plain JSON (images have no fitted statistics)."""
        cfg = asdict(self.config)
        cfg["crop_scale"], cfg["crop_ratio"] = list(cfg["crop_scale"]), list(cfg["crop_ratio"])
        return {"config": cfg}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ImageProcessor:
        """Rebuild from :meth:`get_state`."""
        try:
            return cls(ImageConfig(**state["config"]))
        except (KeyError, TypeError) as err:
            raise ConfigError(f"invalid image processor state: {err}") from None
