"""Log-mel spectrograms in plain torch (no torchaudio), matching librosa's conventions.

The STFT is ``torch.stft`` with a periodic Hann window, ``center=True`` and reflect
padding; the power spectrum is projected onto triangular mel filters and put on a log
scale. Everything works on any leading batch shape and in float32 or float64.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from crossfuse.errors import ConfigError

MEL_SCALES = ("slaney", "htk")
LOG_MODES = ("db", "ln")
LN_EPS = 1e-6  # added to the power before the natural log in "ln" mode

# Slaney's Auditory Toolbox mel scale: linear below 1 kHz, logarithmic above.
_SLANEY_F_SP = 200.0 / 3.0  # Hz per mel in the linear part
_SLANEY_MIN_LOG_HZ = 1000.0  # where the log part starts
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP  # = 15 mels
_SLANEY_LOGSTEP = math.log(6.4) / 27.0  # log-Hz per mel above 1 kHz


@dataclass
class MelConfig:
    """How to turn a waveform into a log-mel spectrogram."""

    sample_rate: int = 16000  # samples per second of the input waveform
    n_fft: int = 400  # FFT size; gives n_fft // 2 + 1 frequency bins
    hop_length: int = 160  # samples between successive frames
    win_length: int | None = None  # Hann window length (<= n_fft); None means n_fft
    n_mels: int = 64  # number of mel bands
    f_min: float = 0.0  # lowest filter edge in Hz
    f_max: float | None = None  # highest filter edge in Hz; None means sample_rate / 2
    mel_scale: str = "slaney"  # "slaney" (area-normalised filters) or "htk" (unnormalised)
    log: str = "db"  # "db": 10*log10(max(power, amin)); "ln": ln(power + 1e-6)
    amin: float = 1e-10  # power floor before the dB conversion
    top_db: float | None = 80.0  # dB mode: clip to (max of each spectrogram - top_db)

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"mel {name} must be a positive integer, got {value!r}")
        if self.win_length is not None and (
            isinstance(self.win_length, bool)
            or not isinstance(self.win_length, int)
            or not 0 < self.win_length <= self.n_fft
        ):
            raise ConfigError(
                f"mel win_length must be an integer in 1..n_fft ({self.n_fft}) or null, "
                f"got {self.win_length!r}"
            )
        nyquist = self.sample_rate / 2
        if not 0.0 <= self.f_min < nyquist:
            raise ConfigError(f"mel f_min must be in [0, {nyquist:g}) Hz, got {self.f_min!r}")
        if self.f_max is not None and not self.f_min < self.f_max <= nyquist:
            raise ConfigError(
                f"mel f_max must be in (f_min, sample_rate/2] = ({self.f_min:g}, {nyquist:g}] "
                f"Hz or null, got {self.f_max!r}"
            )
        if self.mel_scale not in MEL_SCALES:
            raise ConfigError(f"mel_scale must be one of {MEL_SCALES}, got {self.mel_scale!r}")
        if self.log not in LOG_MODES:
            raise ConfigError(f"mel log must be one of {LOG_MODES}, got {self.log!r}")
        if not self.amin > 0:
            raise ConfigError(f"mel amin must be > 0, got {self.amin!r}")
        if self.top_db is not None and not self.top_db > 0:
            raise ConfigError(f"mel top_db must be > 0 or null, got {self.top_db!r}")

    @property
    def n_freqs(self) -> int:
        """Number of STFT frequency bins."""
        return self.n_fft // 2 + 1

    @property
    def effective_f_max(self) -> float:
        """``f_max`` with ``None`` resolved to the Nyquist frequency."""
        return float(self.sample_rate) / 2 if self.f_max is None else float(self.f_max)

    def num_frames(self, n_samples: int) -> int:
        """Frames produced for a waveform of ``n_samples`` (centred STFT)."""
        return 1 + n_samples // self.hop_length


def hz_to_mel(freqs: torch.Tensor, mel_scale: str = "slaney") -> torch.Tensor:
    """Convert frequencies in Hz to mels on the HTK or Slaney scale."""
    if mel_scale == "htk":
        return 2595.0 * torch.log10(1.0 + freqs / 700.0)
    linear = freqs / _SLANEY_F_SP
    log_part = _SLANEY_MIN_LOG_MEL + torch.log(freqs / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return torch.where(freqs >= _SLANEY_MIN_LOG_HZ, log_part, linear)


def mel_to_hz(mels: torch.Tensor, mel_scale: str = "slaney") -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    linear = mels * _SLANEY_F_SP
    log_part = _SLANEY_MIN_LOG_HZ * torch.exp(_SLANEY_LOGSTEP * (mels - _SLANEY_MIN_LOG_MEL))
    return torch.where(mels >= _SLANEY_MIN_LOG_MEL, log_part, linear)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: str = "slaney",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Triangular mel filters, shape ``(n_freqs, n_mels)`` with ``n_freqs = n_fft // 2 + 1``.

    Band edges are ``n_mels + 2`` points evenly spaced in mel between ``f_min`` and
    ``f_max``; filter ``m`` rises linearly from edge ``m`` to ``m + 1`` and falls to
    ``m + 2``. With ``mel_scale="slaney"`` each filter is divided by its width in Hz
    (times 2), so every filter has the same area; HTK filters keep a peak of 1.
    Computed in float64 and cast to ``dtype``.
    """
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"mel_scale must be one of {MEL_SCALES}, got {mel_scale!r}")
    f_max = float(sample_rate) / 2 if f_max is None else float(f_max)
    f64 = torch.float64
    fft_freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=f64)  # (F,)
    mel_lo, mel_hi = hz_to_mel(torch.tensor([f_min, f_max], dtype=f64), mel_scale)
    edges = mel_to_hz(
        torch.linspace(float(mel_lo), float(mel_hi), n_mels + 2, dtype=f64), mel_scale
    )  # (M + 2,)
    widths = edges[1:] - edges[:-1]  # (M + 1,)
    dist = edges[:, None] - fft_freqs[None, :]  # (M + 2, F): edge minus bin frequency
    rising = -dist[:-2] / widths[:-1, None]  # (M, F): 0 at the left edge, 1 at the centre
    falling = dist[2:] / widths[1:, None]  # (M, F): 1 at the centre, 0 at the right edge
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)  # (M, F)
    if mel_scale == "slaney":
        weights = weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T.contiguous().to(dtype)  # (F, M)


def power_spectrogram(wave: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """|STFT|^2 of ``wave (..., n_samples)`` → ``(..., n_freqs, frames)``."""
    if not wave.is_floating_point():
        raise TypeError(f"wave must be a floating point tensor, got {wave.dtype}")
    n_samples = wave.shape[-1]
    if n_samples <= cfg.n_fft // 2:
        raise ValueError(
            f"waveform of {n_samples} samples is too short for n_fft={cfg.n_fft} "
            f"(reflect padding needs more than {cfg.n_fft // 2} samples)"
        )
    win_length = cfg.win_length or cfg.n_fft
    window = _hann_window(win_length, wave.dtype).to(wave.device)
    lead = wave.shape[:-1]
    flat = wave.reshape(-1, n_samples)  # (B, n_samples)
    spec = torch.stft(
        flat,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )  # (B, F, T) complex
    power = spec.real.square() + spec.imag.square()  # (B, F, T)
    return power.reshape(*lead, *power.shape[-2:])


def power_to_log(mel: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Put a mel power spectrogram ``(..., n_mels, frames)`` on the configured log scale.

    In dB mode, ``top_db`` clips each spectrogram (the last two dims) separately, so a
    batch gives the same result as its items one by one.
    """
    if cfg.log == "ln":
        return torch.log(mel + LN_EPS)
    db = 10.0 * torch.log10(torch.clamp(mel, min=cfg.amin))
    if cfg.top_db is not None:
        peak = db.amax(dim=(-2, -1), keepdim=True)  # (..., 1, 1)
        db = torch.maximum(db, peak - cfg.top_db)
    return db


def mel_power_spectrogram(wave: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Mel power spectrogram of ``wave (..., n_samples)`` → ``(..., n_mels, frames)``."""
    power = power_spectrogram(wave, cfg)  # (..., F, T)
    fb = _shared_filterbank(
        cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max, cfg.mel_scale, wave.dtype
    ).to(wave.device)  # (F, M)
    return torch.matmul(fb.T, power)  # (M, F) @ (..., F, T) → (..., M, T)


# Clip-by-clip preprocessing asks for the same window and filters for every clip;
# building them each time cost about as much as the STFT itself. The cached tensors
# are only read (stft, matmul), never written.
@functools.lru_cache(maxsize=32)
def _hann_window(win_length: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(win_length, periodic=True, dtype=dtype)


@functools.lru_cache(maxsize=32)
def _shared_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float | None,
    mel_scale: str,
    dtype: torch.dtype,
) -> torch.Tensor:
    return mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, dtype=dtype)


def log_mel_spectrogram(wave: torch.Tensor, cfg: MelConfig | None = None) -> torch.Tensor:
    """Log-mel spectrogram of ``wave (..., n_samples)`` → ``(..., n_mels, frames)``.

    ``frames = 1 + n_samples // hop_length``; the dtype follows ``wave``.
    """
    cfg = cfg or MelConfig()
    return power_to_log(mel_power_spectrogram(wave, cfg), cfg)
