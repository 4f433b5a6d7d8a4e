"""The torch log-mel spectrogram against librosa as an independent reference.

Tolerances (stated once, used below):
- filterbank, float64: max abs difference < 1e-10 (relative to peaks of 0.02 / 1.0);
- mel power, float64: elementwise relative error < 1e-4;
- dB, float64: max abs difference < 1e-3 dB; float32: < 1e-2 dB.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from crossfuse.data.melspec import (
    MelConfig,
    hz_to_mel,
    log_mel_spectrogram,
    mel_filterbank,
    mel_power_spectrogram,
    mel_to_hz,
)
from crossfuse.errors import ConfigError

SR = 16000
FB_ATOL = 1e-10
POWER_RTOL = 1e-4
DB_ATOL_F64 = 1e-3
DB_ATOL_F32 = 1e-2

SCALES = [("slaney", False, "slaney"), ("htk", True, None)]  # ours, librosa htk, norm


def chirp_with_noise(seconds: float = 1.0, seed: int = 0, silent_tail: float = 0.0) -> np.ndarray:
    """A 100 Hz → 6.1 kHz linear chirp plus white noise, optionally ending in silence."""
    t = np.arange(int(seconds * SR)) / SR
    x = 0.8 * np.sin(2 * np.pi * (100 * t + 3000 * t**2))
    x = x + 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    if silent_tail:
        x[-int(silent_tail * SR) :] = 0.0
    return x


def librosa_mel(x: np.ndarray, cfg: MelConfig, htk: bool, norm: str | None) -> np.ndarray:
    return librosa.feature.melspectrogram(
        y=x,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=htk,
        norm=norm,
        dtype=np.float64,
    )


@pytest.mark.parametrize("scale,htk,norm", SCALES)
@pytest.mark.parametrize(
    "n_fft,n_mels,f_min,f_max", [(400, 64, 0.0, None), (512, 40, 50.0, 7000.0)]
)
def test_filterbank_matches_librosa(scale, htk, norm, n_fft, n_mels, f_min, f_max):
    ours = mel_filterbank(SR, n_fft, n_mels, f_min, f_max, scale, dtype=torch.float64).numpy()
    ref = librosa.filters.mel(
        sr=SR,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=f_min,
        fmax=f_max,
        htk=htk,
        norm=norm,
        dtype=np.float64,
    ).T  # librosa is (n_mels, n_freqs)
    assert ours.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=FB_ATOL)
    assert (ours.max(axis=0) > 0).all()  # no empty filter


def test_mel_scale_round_trip_and_known_points():
    hz = torch.tensor([0.0, 500.0, 1000.0, 4000.0, 8000.0], dtype=torch.float64)
    for scale in ("slaney", "htk"):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz, scale), scale), hz, atol=1e-9)
    one_khz = torch.tensor(1000.0, dtype=torch.float64)
    assert float(hz_to_mel(one_khz, "slaney")) == pytest.approx(15.0)  # linear/log boundary
    np.testing.assert_allclose(
        hz_to_mel(hz, "slaney").numpy(), librosa.hz_to_mel(hz.numpy(), htk=False), atol=1e-12
    )
    np.testing.assert_allclose(
        hz_to_mel(hz, "htk").numpy(), librosa.hz_to_mel(hz.numpy(), htk=True), atol=1e-9
    )


@pytest.mark.parametrize("scale,htk,norm", SCALES)
@pytest.mark.parametrize("win_length", [None, 320])
def test_mel_power_matches_librosa(scale, htk, norm, win_length):
    x = chirp_with_noise()
    cfg = MelConfig(sample_rate=SR, mel_scale=scale, win_length=win_length)
    ours = mel_power_spectrogram(torch.from_numpy(x), cfg).numpy()
    ref = librosa_mel(x, cfg, htk, norm)
    assert ours.shape == ref.shape == (64, 1 + x.size // 160)
    rel = np.abs(ours - ref) / np.abs(ref)
    assert rel.max() < POWER_RTOL


@pytest.mark.parametrize("scale,htk,norm", SCALES)
@pytest.mark.parametrize("top_db", [80.0, 40.0, None])
def test_db_matches_librosa(scale, htk, norm, top_db):
    # The silent tail drives the power to 0, so the amin floor and top_db clip both matter.
    x = chirp_with_noise(silent_tail=0.25)
    cfg = MelConfig(sample_rate=SR, mel_scale=scale, log="db", top_db=top_db)
    ours = log_mel_spectrogram(torch.from_numpy(x), cfg).numpy()
    ref = librosa.power_to_db(librosa_mel(x, cfg, htk, norm), ref=1.0, amin=1e-10, top_db=top_db)
    assert np.abs(ours - ref).max() < DB_ATOL_F64
    if top_db is not None:
        assert ours.min() == pytest.approx(ours.max() - top_db)  # the clip is active
    else:
        assert ours.min() == pytest.approx(-100.0)  # 10*log10(amin) on silent frames


def test_float32_close_to_float64_reference():
    x = chirp_with_noise(seed=3)
    cfg = MelConfig(sample_rate=SR)
    ours = log_mel_spectrogram(torch.from_numpy(x.astype(np.float32)), cfg)
    assert ours.dtype == torch.float32
    ref = librosa.power_to_db(librosa_mel(x, cfg, False, "slaney"), amin=1e-10, top_db=80.0)
    assert np.abs(ours.numpy() - ref).max() < DB_ATOL_F32


def test_ln_mode_is_natural_log_of_power_plus_eps():
    x = chirp_with_noise(silent_tail=0.2)
    cfg = MelConfig(sample_rate=SR, log="ln")
    ours = log_mel_spectrogram(torch.from_numpy(x), cfg).numpy()
    ref = np.log(librosa_mel(x, cfg, False, "slaney") + 1e-6)
    assert np.abs(ours - ref).max() < 1e-6
    assert ours.min() == pytest.approx(np.log(1e-6), abs=1e-6)  # silent frames


@pytest.mark.parametrize("n_samples", [16000, 16159, 16160, 1000])
def test_frame_count(n_samples):
    cfg = MelConfig(n_mels=32)
    out = log_mel_spectrogram(torch.randn(n_samples, dtype=torch.float64), cfg)
    assert out.shape == (32, cfg.num_frames(n_samples)) == (32, 1 + n_samples // 160)


def test_batched_equals_unbatched_with_per_item_top_db():
    # Items differ in loudness by 60 dB: top_db must clip each one relative to its own max.
    items = [chirp_with_noise(seed=s) * g for s, g in [(0, 1.0), (1, 1e-3), (2, 0.3)]]
    items.append(np.zeros(SR))  # an all-silent item stays finite
    wave = torch.from_numpy(np.stack(items)).reshape(2, 2, SR)  # (2, 2, n)
    cfg = MelConfig(top_db=30.0)
    batched = log_mel_spectrogram(wave, cfg)
    assert batched.shape == (2, 2, 64, 101)
    for i in range(2):
        for j in range(2):
            single = log_mel_spectrogram(wave[i, j], cfg)
            torch.testing.assert_close(batched[i, j], single, rtol=0, atol=1e-9)
    assert torch.isfinite(batched).all()
    assert batched[1, 1].eq(-100.0).all()


def test_rejects_too_short_and_integer_input():
    with pytest.raises(ValueError, match="too short"):
        log_mel_spectrogram(torch.zeros(200), MelConfig(n_fft=400))
    with pytest.raises(TypeError, match="floating point"):
        log_mel_spectrogram(torch.zeros(1000, dtype=torch.int16))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_fft": 0}, "n_fft"),
        ({"hop_length": 1.5}, "hop_length"),
        ({"win_length": 401}, "win_length"),
        ({"f_min": -1.0}, "f_min"),
        ({"f_max": 9000.0}, "f_max"),
        ({"f_min": 4000.0, "f_max": 3000.0}, "f_max"),
        ({"mel_scale": "bark"}, "mel_scale"),
        ({"log": "log2"}, "log"),
        ({"top_db": 0.0}, "top_db"),
        ({"amin": 0.0}, "amin"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MelConfig(**kwargs)


def test_config_defaults_resolve_f_max():
    cfg = MelConfig(sample_rate=22050)
    assert cfg.effective_f_max == 11025.0
    assert cfg.n_freqs == 201
