"""``spectrogram-cnn``: an ImageNet EfficientNet-Lite reading the log-mel spectrogram as an image.

The pretrained default for audio: ImageNet features (edges, textures, blobs) transfer
well to spectrograms, and no audio checkpoint needs to be downloaded.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from crossfuse.encoders.base import InputSpec, ModalityOutput, register_encoder
from crossfuse.encoders.efficientnet import (
    EfficientNetLiteBackbone,
    check_variant,
    native_resolution,
)
from crossfuse.encoders.image import run_present, scatter_rows
from crossfuse.encoders.text import check_positive
from crossfuse.errors import ConfigError

DEFAULT_N_MELS = 128  # mel bands asked of the audio processor: finer than its default of 64


def _check_side(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(
            f"spectrogram-cnn {name} must be a positive integer or null, got {value!r}"
        )


@register_encoder("spectrogram-cnn", "audio")
class SpectrogramCNNEncoder(EfficientNetLiteBackbone):
    """Log-mel → 3-channel image → EfficientNet-Lite: pooled (B, 1280), tokens over time.

    Expects ``{"mel": (B, n_mels, frames), "present": (B,)}`` from the ``audio`` processor
    with standardised log-mel values (``normalize: true``, which :meth:`processor_choice`
    asks for). Each spectrogram is clipped to ``±clip`` standard deviations and mapped to
    [-1, 1] (the tflite pixel range the network was trained on), repeated to 3 channels
    and bilinearly resized to ``height × width`` (frequency × time), by default the
    variant's square resolution (224 for lite0): a fixed cost per clip whatever its
    length. The final feature map is averaged over everything for ``pooled`` and over
    frequency only for the tokens, one per time step (``ceil(width / 32)``: 7 at 224).
    Absent rows are not run and come out exactly zero with an all-False token mask.

    Args:
        spec: the input (shape ``(n_mels, frames)``; any size works).
        dim: ignored; accepted so configs stay uniform (the fusion projects 1280).
        variant: ``lite0`` | ``lite1`` | ``lite2``.
        weights: a local ``.pth``/``.safetensors`` state dict replacing the packaged one.
        height: pixels along frequency; None = the variant's resolution.
        width: pixels along time; None = the variant's resolution. Raise it for long
            clips to keep more time detail (and more tokens) at proportionally more cost.
        clip: standard deviations mapped to the ends of the pixel range.
        n_mels: mel bands the audio processor computes (read by ``processor_choice``).
        drop_connect: stochastic-depth rate while fine-tuning.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        dim: int | None = None,
        variant: str = "lite0",
        weights: str | None = None,
        height: int | None = None,
        width: int | None = None,
        clip: float = 3.0,
        n_mels: int = DEFAULT_N_MELS,
        drop_connect: float = 0.2,
    ) -> None:
        if len(spec.shape) != 2:
            raise ConfigError(
                f"audio input {spec.name!r} needs shape (n_mels, frames), got {tuple(spec.shape)}"
            )
        check_variant(variant)
        _check_side("height", height)
        _check_side("width", width)
        check_positive(n_mels=n_mels)
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
            raise ConfigError(f"spectrogram-cnn clip must be a number > 0, got {clip!r}")
        if not math.isfinite(clip):
            raise ConfigError(f"spectrogram-cnn clip must be finite, got {clip!r}")
        super().__init__(variant=variant, weights=weights, drop_connect=drop_connect)
        native = native_resolution(variant)
        self.image_size = (height or native, width or native)  # (frequency, time) pixels
        self.clip = float(clip)

    @classmethod
    def processor_choice(cls, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The ``audio`` processor with ``n_mels`` bands (default 128) and standardisation."""
        n_mels = options.get("n_mels", DEFAULT_N_MELS)
        check_positive(n_mels=n_mels)
        return "audio", {"n_mels": n_mels, "normalize": True}

    def to_image(self, mel: torch.Tensor) -> torch.Tensor:
        """Standardised ``mel (P, M, T)`` → tflite-range image ``(P, 3, height, width)``."""
        x = mel.clamp(-self.clip, self.clip) / self.clip  # (P, M, T) in [-1, 1]
        x = F.interpolate(
            x.unsqueeze(1), size=self.image_size, mode="bilinear", align_corners=False
        )
        return x.expand(-1, 3, -1, -1)  # (P, 3, H, W): the same picture on every channel

    def _encode(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel (P, M, T)`` of present rows → feature map ``(P, 1280, h, w)``."""
        return self.features(self.to_image(mel))

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModalityOutput:
        mel, present = inputs["mel"], inputs["present"]  # (B, M, T), (B,)
        batch = mel.shape[0]
        ran = run_present(self._encode, mel, present)
        if ran is None:  # nothing to encode: all-zero outputs, everything masked
            steps = self.grid_size(*self.image_size)[1]
            pooled = mel.new_zeros((batch, self.out_dim))
            tokens = mel.new_zeros((batch, steps, self.out_dim))
        else:
            fmap, index = ran  # (P, 1280, h, w)
            pooled = scatter_rows(fmap.mean(dim=(2, 3)), index, batch)  # (B, D)
            tokens = scatter_rows(fmap.mean(dim=2).transpose(1, 2), index, batch)  # (B, w, D)
        mask = present.unsqueeze(1).expand(-1, tokens.shape[1]).clone()  # (B, T')
        return ModalityOutput(pooled=pooled, present=present, tokens=tokens, token_mask=mask)
