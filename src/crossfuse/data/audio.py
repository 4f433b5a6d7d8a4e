"""Audio cells: decode (soundfile), down-mix, resample, crop/pad, log-mel, augment.

A cell is a file path, the raw bytes of a file, or an ``(array, sample_rate)`` tuple
with the array shaped ``(samples,)`` or ``(channels, samples)``. Every clip becomes a
float32 log-mel spectrogram of fixed shape ``(n_mels, frames)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossfuse.data.audio_io import fix_length, load_audio_cell, resample, to_mono
from crossfuse.data.media import is_missing
from crossfuse.data.melspec import MelConfig, log_mel_spectrogram
from crossfuse.data.processor import ColumnProcessor, register_processor, stack_fixed
from crossfuse.errors import CellError, ConfigError, CrossfuseError, ModelDirError

CROP_MODES = ("center", "start")
_FIT_SEED = 0  # fixed seed for choosing which training files the statistics come from
_MIN_STD = 1e-6  # floor for the fitted std (a column of silent clips has std 0)


@dataclass
class AudioConfig:
    """How an audio column is turned into a fixed-size log-mel spectrogram."""

    sample_rate: int = 16000  # every clip is resampled to this rate (Hz)
    duration: float = 1.0  # seconds; every clip is cropped or zero-padded to exactly this
    crop: str = "center"  # which part of a long clip to keep outside training: center|start
    n_fft: int = 400  # mel: FFT size
    hop_length: int = 160  # mel: samples between frames
    win_length: int | None = None  # mel: Hann window length; None means n_fft
    n_mels: int = 64  # mel: number of mel bands
    f_min: float = 0.0  # mel: lowest filter edge (Hz)
    f_max: float | None = None  # mel: highest filter edge (Hz); None means sample_rate / 2
    mel_scale: str = "slaney"  # mel: "slaney" or "htk"
    log: str = "db"  # mel: "db" or "ln"
    top_db: float | None = 80.0  # mel: dB dynamic range kept per clip; None keeps all
    normalize: bool = True  # standardise with a mean and std fitted on training clips
    fit_max_files: int = 256  # at most this many training files are decoded by fit
    augment: bool = False  # when training: random crop, gain, shift and SpecAugment
    freq_masks: int = 2  # SpecAugment: number of frequency masks
    freq_mask_width: int = 8  # SpecAugment: maximum mel bands per frequency mask
    time_masks: int = 2  # SpecAugment: number of time masks
    time_mask_width: int = 10  # SpecAugment: maximum frames per time mask
    gain_db: float = 6.0  # random gain drawn uniformly from [-gain_db, +gain_db] dB
    max_shift: float = 0.1  # random time shift up to this many seconds either way (zero fill)

    def __post_init__(self) -> None:
        _ = self.mel  # building the MelConfig validates the mel fields
        _require(
            isinstance(self.duration, (int, float))
            and not isinstance(self.duration, bool)
            and self.duration > 0,
            f"audio duration must be > 0 seconds, got {self.duration!r}",
        )
        _require(
            self.crop in CROP_MODES, f"audio crop must be one of {CROP_MODES}, got {self.crop!r}"
        )
        _require(
            self.n_samples > self.n_fft // 2,
            f"audio duration {self.duration}s gives "
            f"{self.n_samples} samples, too few for n_fft={self.n_fft}",
        )
        for name in ("normalize", "augment"):
            _require(isinstance(getattr(self, name), bool), f"audio {name} must be true/false")
        _require(
            _is_int(self.fit_max_files) and self.fit_max_files >= 1,
            f"audio fit_max_files must be an integer >= 1, got {self.fit_max_files!r}",
        )
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            value = getattr(self, name)
            _require(
                _is_int(value) and value >= 0,
                f"audio {name} must be an integer >= 0, got {value!r}",
            )
        _require(
            self.freq_mask_width <= self.n_mels,
            f"audio freq_mask_width ({self.freq_mask_width}) exceeds n_mels ({self.n_mels})",
        )
        _require(
            self.time_mask_width <= self.n_frames,
            f"audio time_mask_width "
            f"({self.time_mask_width}) exceeds the {self.n_frames} frames of a clip",
        )
        _require(self.gain_db >= 0, f"audio gain_db must be >= 0, got {self.gain_db!r}")
        _require(
            0 <= self.max_shift < self.duration,
            f"audio max_shift must be in [0, duration) seconds, got {self.max_shift!r}",
        )

    @property
    def mel(self) -> MelConfig:
        """The spectrogram settings (sample rate taken from this config)."""
        return MelConfig(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            n_mels=self.n_mels,
            f_min=self.f_min,
            f_max=self.f_max,
            mel_scale=self.mel_scale,
            log=self.log,
            top_db=self.top_db,
        )

    @property
    def n_samples(self) -> int:
        """Samples per clip after cropping/padding."""
        return int(round(self.duration * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """Spectrogram frames per clip."""
        return 1 + self.n_samples // self.hop_length


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """Delay ``x (n,)`` by ``k`` samples (advance if negative), filling with zeros."""
    if k == 0:
        return x
    out = np.zeros_like(x)
    if k > 0:
        out[k:] = x[:-k]
    else:
        out[:k] = x[-k:]
    return out


def _spec_augment(
    spec: torch.Tensor, cfg: AudioConfig, rng: np.random.Generator, fill: float
) -> torch.Tensor:
    """Overwrite random mel bands and frame ranges of ``spec (M, T)`` with ``fill``."""
    spec = spec.clone()
    n_mels, n_frames = spec.shape
    for _ in range(cfg.freq_masks):
        width = int(rng.integers(0, cfg.freq_mask_width + 1))
        start = int(rng.integers(0, n_mels - width + 1))
        spec[start : start + width, :] = fill
    for _ in range(cfg.time_masks):
        width = int(rng.integers(0, cfg.time_mask_width + 1))
        start = int(rng.integers(0, n_frames - width + 1))
        spec[:, start : start + width] = fill
    return spec


@register_processor("audio")
class AudioProcessor(ColumnProcessor):
    """Audio column → standardised log-mel spectrogram ``(n_mels, frames)``."""

    config_class = AudioConfig

    def __init__(self, config: AudioConfig | None = None) -> None:
        self.config = config or AudioConfig()
        self.mean: float | None = None  # fitted on training clips (log-mel units)
        self.std: float | None = None
        self.fit_count = 0  # how many training files the statistics come from

    @property
    def output_shape(self) -> tuple[int, int]:
        """``(n_mels, frames)`` of every processed clip."""
        return (self.config.n_mels, self.config.n_frames)

    def load(self, cell: Any, base_dir: Path | None = None) -> tuple[np.ndarray, int]:
        """Decode a cell to ``(channels, n) float32`` and its sample rate."""
        return load_audio_cell(cell, base_dir)

    def _waveform(
        self, cell: Any, base_dir: Path | None, augment: bool, rng: np.random.Generator | None
    ) -> np.ndarray:
        """Decoded, mono, resampled, fixed-length waveform ``(n_samples,)``."""
        cfg = self.config
        samples, sr = self.load(cell, base_dir)  # (C, n)
        wave = resample(to_mono(samples), sr, cfg.sample_rate)  # (n',)
        if not augment:
            return fix_length(wave, cfg.n_samples, cfg.crop)
        wave = fix_length(wave, cfg.n_samples, "random", rng)
        wave = wave * np.float32(10.0 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20.0))
        max_k = int(round(cfg.max_shift * cfg.sample_rate))
        return _shift(wave, int(rng.integers(-max_k, max_k + 1)))

    def _log_mel(self, wave: np.ndarray) -> torch.Tensor:
        return log_mel_spectrogram(torch.from_numpy(wave), self.config.mel)  # (M, T)

    def fit(self, cells: Any, base_dir: Path | None = None) -> AudioProcessor:
        """Fit the log-mel mean and std on up to ``fit_max_files`` decodable training cells.

        Files are visited in a fixed pseudo-random order (so a sorted table does not
        bias the statistics); cells that are empty or cannot be decoded are skipped.
        """
        if not self.config.normalize:
            return self
        cells = list(cells)
        total = total_sq = 0.0
        count = files = 0
        first_error: str | None = None
        for i in np.random.default_rng(_FIT_SEED).permutation(len(cells)):
            if files >= self.config.fit_max_files:
                break
            cell = cells[int(i)]
            if is_missing(cell):
                continue
            try:
                spec = self._log_mel(self._waveform(cell, base_dir, False, None)).double()
            except CellError as err:
                first_error = first_error or str(err)
                continue
            total += float(spec.sum())
            total_sq += float(spec.square().sum())
            count += spec.numel()
            files += 1
        if files == 0:
            detail = f" (first error: {first_error})" if first_error else ""
            raise CrossfuseError(
                f"audio: none of the {len(cells)} training cells could be decoded{detail}"
            )
        self.fit_count = files
        self.mean = total / count
        self.std = max(math.sqrt(max(total_sq / count - self.mean**2, 0.0)), _MIN_STD)
        return self

    def process(
        self,
        cell: Any,
        *,
        base_dir: Path | None = None,
        train: bool = False,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """One cell → float32 ``(n_mels, frames)``; augmented only if ``train`` and ``augment``."""
        cfg = self.config
        if cfg.normalize and self.mean is None:
            raise RuntimeError("AudioProcessor.fit must run before process when normalize=True")
        augment = train and cfg.augment
        if augment and rng is None:
            rng = np.random.default_rng()
        spec = self._log_mel(self._waveform(cell, base_dir, augment, rng))  # (M, T)
        if cfg.normalize:
            spec = (spec - self.mean) / self.std
        if augment:
            fill = 0.0 if cfg.normalize else float(spec.mean())
            spec = _spec_augment(spec, cfg, rng, fill)
        return spec.to(torch.float32)

    def collate(self, items: list[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Batch → ``{"mel": (B, n_mels, frames), "present": (B,) bool}``."""
        return stack_fixed(items, self.output_shape, "mel")

    def get_state(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "mean": self.mean,
            "std": self.std,
            "fit_count": self.fit_count,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AudioProcessor:
        known = {f.name for f in fields(AudioConfig)}
        try:
            config = state["config"]
            unknown = sorted(set(config) - known)
            if unknown:
                raise ModelDirError(f"audio processor state has unknown settings {unknown}")
            proc = cls(AudioConfig(**config))
            proc.mean = None if state.get("mean") is None else float(state["mean"])
            proc.std = None if state.get("std") is None else float(state["std"])
            proc.fit_count = int(state.get("fit_count", 0))
        except (KeyError, TypeError, ValueError, ConfigError) as err:
            raise ModelDirError(f"audio processor state is invalid: {err}") from None
        return proc
