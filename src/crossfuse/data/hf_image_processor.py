"""``hf-image`` processor: decode an image, then a pretrained Hugging Face image processor.

Decoding reuses :func:`crossfuse.data.image.decode_image` (same formats and error
reasons as the default image processor); resizing, cropping and normalisation are the
model's own (``AutoImageProcessor``, Pillow backend).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from crossfuse.data.image import decode_image
from crossfuse.data.media import resolve_media
from crossfuse.data.processor import (
    ColumnProcessor,
    ReloadsAfterPickling,
    register_processor,
    stack_fixed,
)
from crossfuse.encoders.hf_common import load_hf, resolve_model
from crossfuse.errors import ConfigError, ModelDirError

_PROBE_SIDE = 256  # side of the blank square image that fixes the output shape


@dataclass
class HFImageProcessorConfig:
    """Which pretrained image processor prepares the pixels."""

    model: str = ""  # hub id or local directory holding preprocessor_config.json (required)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(
                "hf-image needs a model: a hub id or a local directory, "
                "e.g. options: {model: /path/to/dir}"
            )


@register_processor("hf-image", "image")
class HFImageProcessor(ReloadsAfterPickling, ColumnProcessor):
    """Image column → ``(3, H, W)`` float32 ``pixel_values`` as the pretrained model expects.

    Every image gets the shape the model's processor gives a square image; the few
    processors whose output follows the input's aspect ratio are bilinearly resized to
    it so batches stack. No augmentation: ``train`` is ignored. The image processor is
    loaded on first use and dropped when pickled; the state is the config only.
    """

    config_class = HFImageProcessorConfig

    def __init__(self, config: HFImageProcessorConfig | None = None) -> None:
        self.config = config or HFImageProcessorConfig()
        self._hf: Any = None
        self._shape: tuple[int, int, int] | None = None

    @property
    def image_processor(self) -> Any:
        """The ``AutoImageProcessor`` for ``config.model`` (Pillow backend, loaded once)."""
        if self._hf is None:
            from transformers import AutoImageProcessor

            path = resolve_model(self.config.model)

            def load(name: str) -> Any:
                return AutoImageProcessor.from_pretrained(name, backend="pil")

            self._hf = load_hf(load, path, "image processor")
        return self._hf

    def _pixels(self, img: Image.Image) -> torch.Tensor:
        out = self.image_processor(images=img, return_tensors="pt")
        return out["pixel_values"][0].to(torch.float32)  # (C, H, W)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every processed cell."""
        if self._shape is None:
            blank = Image.new("RGB", (_PROBE_SIDE, _PROBE_SIDE), (128, 128, 128))
            self._shape = tuple(self._pixels(blank).shape)  # type: ignore[assignment]
        return self._shape  # type: ignore[return-value]

    def process(
        self,
        cell: Any,
        *,
        base_dir: Path | None = None,
        train: bool = False,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """Decode one cell (path, bytes, PIL image or uint8 array) → ``(C, H, W)`` pixels.

        Raises:
            CellError: the file is missing/empty or cannot be decoded.
        """
        if not isinstance(cell, (bytes, bytearray, memoryview, Image.Image, np.ndarray)):
            cell = resolve_media(cell, base_dir)
        x = self._pixels(decode_image(cell, channels=3))  # (C, H, W)
        shape = self.output_shape
        if tuple(x.shape) != shape:
            x = F.interpolate(x[None], size=shape[1:], mode="bilinear", align_corners=False)[0]
        return x

    def collate(self, items: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Stack into ``pixel_values`` (B, C, H, W) and ``present`` (B,)."""
        return stack_fixed(items, self.output_shape, "pixel_values")

    def get_state(self) -> dict[str, Any]:
        """The config only; the image processor is reloaded from ``model``."""
        return {"config": asdict(self.config)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HFImageProcessor:
        """Rebuild from :meth:`get_state`."""
        try:
            return cls(HFImageProcessorConfig(**state["config"]))
        except (KeyError, TypeError, ConfigError) as err:
            raise ModelDirError(f"hf-image processor state is invalid: {err}") from None
