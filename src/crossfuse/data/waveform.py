"""``hf-audio`` processor: waveform of fixed duration → a pretrained feature extractor.

Decoding, down-mixing, resampling and crop/pad reuse :mod:`crossfuse.data.audio_io`;
the features (raw normalised samples for wav2vec2/HuBERT, log-mel for Whisper and
AST) are the model's own (``AutoFeatureExtractor``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossfuse.data.audio_io import fix_length, load_audio_cell, resample, to_mono
from crossfuse.data.processor import (
    ColumnProcessor,
    ReloadsAfterPickling,
    register_processor,
    stack_fixed,
)
from crossfuse.encoders.hf_common import load_hf, resolve_model
from crossfuse.errors import ConfigError, ModelDirError

MAX_DURATION = 600.0  # seconds; longer clips would not fit a batch anyway


@dataclass
class HFAudioProcessorConfig:
    """Which feature extractor prepares the audio, and how long every clip is."""

    model: str = ""  # hub id or local directory holding preprocessor_config.json (required)
    duration: float = 1.0  # seconds; every clip is centre-cropped or zero-padded to this

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(
                "hf-audio needs a model: a hub id or a local directory, "
                "e.g. options: {model: /path/to/dir}"
            )
        d = self.duration
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d <= MAX_DURATION:
            raise ConfigError(f"hf-audio duration must be in (0, {MAX_DURATION:g}] s, got {d!r}")


@register_processor("hf-audio", "audio")
class HFAudioProcessor(ReloadsAfterPickling, ColumnProcessor):
    """Audio column → the model's main input for one fixed-length clip.

    ``input_values (n,)`` (wav2vec2, HuBERT), ``input_features (n_mels, frames)``
    (Whisper) or ``input_values (frames, n_mels)`` (AST). Extractors that pad every
    clip further (Whisper: to 30 s) get a ``content_frames`` entry in the batch: how
    many feature frames hold the clip, so the encoder can ignore the padding. The
    feature extractor is loaded on first use and dropped when pickled; the state is
    the config only. No augmentation: ``train`` is ignored.
    """

    config_class = HFAudioProcessorConfig

    def __init__(self, config: HFAudioProcessorConfig | None = None) -> None:
        self.config = config or HFAudioProcessorConfig()
        self._hf: Any = None
        self._shape: tuple[int, ...] | None = None

    @property
    def feature_extractor(self) -> Any:
        """The ``AutoFeatureExtractor`` for ``config.model`` (loaded once)."""
        if self._hf is None:
            from transformers import AutoFeatureExtractor

            path = resolve_model(self.config.model)
            fe = load_hf(AutoFeatureExtractor.from_pretrained, path, "feature extractor")
            if not getattr(fe, "sampling_rate", None) or not getattr(fe, "model_input_names", []):
                raise ConfigError(
                    f"{self.config.model!r} has no audio feature extractor (no sampling_rate)"
                )
            self._hf = fe
        return self._hf

    @property
    def sample_rate(self) -> int:
        """The rate every clip is resampled to: the feature extractor's."""
        return int(self.feature_extractor.sampling_rate)

    @property
    def key(self) -> str:
        """The model's main input name: ``input_values`` or ``input_features``."""
        return str(self.feature_extractor.model_input_names[0])

    @property
    def n_samples(self) -> int:
        """Samples per clip after crop/pad."""
        return max(1, int(round(self.config.duration * self.sample_rate)))

    @property
    def content_frames(self) -> int | None:
        """Feature frames that hold the clip when the extractor pads further, else None."""
        fe = self.feature_extractor
        padded, hop = getattr(fe, "n_samples", None), getattr(fe, "hop_length", None)
        if self.key != "input_features" or not padded or not hop or self.n_samples >= padded:
            return None
        return min(self.output_shape[-1], math.ceil(self.n_samples / hop))

    def _features(self, wave: np.ndarray) -> torch.Tensor:
        out = self.feature_extractor(wave, sampling_rate=self.sample_rate, return_tensors="pt")
        return out[self.key][0].to(torch.float32)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of every processed clip (one silent clip is run once to learn it)."""
        if self._shape is None:
            self._shape = tuple(self._features(np.zeros(self.n_samples, np.float32)).shape)
        return self._shape

    def load(self, cell: Any, base_dir: Path | None = None) -> tuple[np.ndarray, int]:
        """Decode a path, file bytes or ``(array, sample_rate)`` → ``(channels, n)``, rate."""
        return load_audio_cell(cell, base_dir)

    def process(
        self,
        cell: Any,
        *,
        base_dir: Path | None = None,
        train: bool = False,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """One cell → the model's main input for one clip (see the class docstring).

        Raises:
            CellError: the file is missing/empty/undecodable or holds no finite samples.
        """
        samples, sr = self.load(cell, base_dir)  # (C, n)
        wave = resample(to_mono(samples), sr, self.sample_rate)  # (n',)
        return self._features(fix_length(wave, self.n_samples, "center"))

    def collate(self, items: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Stack → ``{key: (B, ...), "present": (B,)}`` (+ ``content_frames (B,)``)."""
        batch = stack_fixed(items, self.output_shape, self.key)
        frames = self.content_frames
        if frames is not None:
            batch["content_frames"] = batch["present"].long() * frames  # (B,)
        return batch

    def get_state(self) -> dict[str, Any]:
        """The config only; the feature extractor is reloaded from ``model``."""
        return {"config": asdict(self.config)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HFAudioProcessor:
        """Rebuild from :meth:`get_state`."""
        try:
            return cls(HFAudioProcessorConfig(**state["config"]))
        except (KeyError, TypeError, ConfigError) as err:
            raise ModelDirError(f"hf-audio processor state is invalid: {err}") from None
