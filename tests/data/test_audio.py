"""Audio cells: decoding every format, bad files, resampling, fixed length, the processor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from crossfuse.data.audio import AudioConfig, AudioProcessor
from crossfuse.data.audio_io import decode_audio, fix_length, resample, to_mono
from crossfuse.data.processor import processor_class
from crossfuse.errors import CellError, ConfigError, CrossfuseError, ModelDirError

SR = 16000


def sine(freq: float = 440.0, seconds: float = 1.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[np.argmax(spectrum)])


def write(path: Path, data: np.ndarray, sr: int = SR, **kwargs) -> Path:
    sf.write(str(path), data, sr, **kwargs)
    return path


@pytest.fixture
def clips(tmp_path: Path) -> list[str]:
    """Five 16 kHz WAVs of different pitch, loudness and length (relative names)."""
    rng = np.random.default_rng(0)
    names = []
    for i, (freq, amp, secs) in enumerate(
        [(220, 0.5, 1.0), (440, 0.1, 0.6), (880, 0.8, 1.4), (1500, 0.3, 1.0), (3000, 0.05, 0.8)]
    ):
        x = sine(freq, secs, amp=amp) + 0.01 * rng.standard_normal(int(secs * SR))
        write(tmp_path / f"clip{i}.wav", x.astype(np.float32))
        names.append(f"clip{i}.wav")
    return names


FORMATS = [
    ("wav", "WAV", "PCM_16", 1e-4),
    ("wav", "WAV", "PCM_24", 1e-6),
    ("wav", "WAV", "PCM_32", 1e-6),
    ("wav", "WAV", "FLOAT", 0.0),
    ("wav", "WAV", "DOUBLE", 1e-7),
    ("flac", "FLAC", "PCM_16", 1e-4),
    ("flac", "FLAC", "PCM_24", 1e-6),
]


@pytest.mark.parametrize("ext,fmt,subtype,atol", FORMATS)
def test_decodes_lossless_formats(tmp_path, ext, fmt, subtype, atol):
    x = sine(440, 0.5, sr=22050)
    path = write(tmp_path / f"a.{ext}", x, 22050, format=fmt, subtype=subtype)
    data, sr = decode_audio(path)
    assert sr == 22050
    assert data.dtype == np.float32 and data.shape == (1, x.size)
    assert np.abs(data[0] - x).max() <= atol
    from_bytes, sr2 = decode_audio(path.read_bytes())
    assert sr2 == 22050 and np.array_equal(from_bytes, data)


def test_decodes_ogg_vorbis(tmp_path):
    if "VORBIS" not in sf.available_subtypes("OGG"):
        pytest.skip("this libsndfile has no OGG Vorbis support")
    x = sine(440, 1.0)
    path = write(tmp_path / "a.ogg", x, format="OGG", subtype="VORBIS")
    data, sr = decode_audio(str(path))
    assert sr == SR and data.shape[0] == 1
    assert abs(data.shape[1] - x.size) <= 1024  # lossy codec: about the same length
    assert peak_hz(data[0], sr) == pytest.approx(440, abs=2)


def test_stereo_is_down_mixed(tmp_path):
    left = sine(440)
    path = write(tmp_path / "st.wav", np.stack([left, -0.5 * left], axis=1), subtype="FLOAT")
    data, _ = decode_audio(path)
    assert data.shape == (2, SR)
    mono = to_mono(data)
    assert mono.shape == (SR,) and mono.dtype == np.float32
    np.testing.assert_allclose(mono, 0.25 * left, atol=1e-7)


@pytest.mark.parametrize("orig_sr", [8000, 44100])
def test_resample_keeps_pitch_and_length(orig_sr):
    out = resample(sine(440, 1.0, sr=orig_sr), orig_sr, SR)
    assert out.dtype == np.float32 and out.shape == (SR,)
    assert peak_hz(out, SR) == pytest.approx(440, abs=1)
    assert np.abs(out[1000:-1000]).max() == pytest.approx(0.5, abs=0.01)  # amplitude kept


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resample_equals_scipy_default_filter(dtype):
    # resample() designs the anti-aliasing filter once per rate pair; the result must be
    # bit-identical to resample_poly designing it on every call, across several pairs.
    from scipy.signal import resample_poly

    x = np.random.default_rng(0).standard_normal((2, 4321)).astype(dtype)
    for orig_sr, up, down in [(8000, 2, 1), (44100, 160, 441), (22050, 320, 441), (8000, 2, 1)]:
        expected = resample_poly(x, up, down, axis=-1).astype(np.float32)
        assert np.array_equal(resample(x, orig_sr, SR), expected)


def test_resample_same_rate_is_identity():
    x = sine()
    assert np.array_equal(resample(x, SR, SR), x)


@pytest.mark.parametrize("mode", ["center", "start", "random"])
@pytest.mark.parametrize("length", [100, 1000, 2500])
def test_fix_length_is_exact(mode, length):
    x = np.arange(1, length + 1, dtype=np.float32)
    out = fix_length(x, 1000, mode, np.random.default_rng(0))
    assert out.shape == (1000,)
    kept = out[out != 0]
    assert kept.size == min(length, 1000)
    assert np.array_equal(kept, np.arange(kept[0], kept[0] + kept.size))  # contiguous run


def test_fix_length_placement():
    x = np.arange(1, 11, dtype=np.float32)
    assert fix_length(x, 4, "start").tolist() == [1, 2, 3, 4]
    assert fix_length(x, 4, "center").tolist() == [4, 5, 6, 7]
    assert fix_length(x[:2], 6, "center").tolist() == [0, 0, 1, 2, 0, 0]
    assert fix_length(x[:2], 4, "start").tolist() == [1, 2, 0, 0]
    starts = {fix_length(x, 4, "random", np.random.default_rng(s))[0] for s in range(40)}
    assert starts == set(range(1, 8))  # every offset is reachable
    with pytest.raises(ValueError, match="mode"):
        fix_length(x, 4, "end")


def reason(excinfo: pytest.ExceptionInfo) -> str:
    return excinfo.value.reason


def test_truncated_wav_is_reported(tmp_path):
    path = write(tmp_path / "t.wav", sine(), subtype="PCM_16")  # 32000 bytes of samples
    raw = path.read_bytes()
    data_at = raw.index(b"data") + 8
    cut = raw[: data_at + 10000]
    path.write_bytes(cut)
    with pytest.raises(CellError) as err:
        decode_audio(path)
    assert reason(err) == "truncated audio file: header says 32000 bytes of samples, file has 10000"
    assert err.value.file == str(path)
    with pytest.raises(CellError, match="header says 32000 bytes"):
        decode_audio(cut)
    with pytest.raises(CellError, match="truncated audio file"):
        decode_audio(raw[:30])  # cut inside the fmt chunk


def test_zero_frame_wav(tmp_path):
    path = write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    assert path.stat().st_size > 0
    with pytest.raises(CellError) as err:
        decode_audio(path)
    assert reason(err) == "no audio samples"


def test_text_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(CellError) as err:
        decode_audio(path)
    assert reason(err).startswith("cannot decode audio: ")
    assert len(reason(err)) > len("cannot decode audio: ")
    with pytest.raises(CellError, match="cannot decode audio"):
        decode_audio(b"RIFF\x00\x00")  # garbage bytes


def test_non_finite_float_wav(tmp_path):
    x = sine()
    x[100] = np.nan
    path = write(tmp_path / "nan.wav", x, subtype="FLOAT")
    with pytest.raises(CellError, match="NaN or infinite"):
        decode_audio(path)


def _zero_byte(d: Path) -> str:
    (d / "zero.wav").write_bytes(b"")
    return "zero.wav"


def _directory(d: Path) -> str:
    (d / "sub").mkdir()
    return "sub"


def _text_as_wav(d: Path) -> str:
    (d / "x.wav").write_text("hello, this is text")
    return "x.wav"


@pytest.mark.parametrize(
    "make,expected",
    [
        (_zero_byte, "0 bytes"),
        (lambda d: "missing.wav", "file not found"),
        (_directory, "directory"),
        (_text_as_wav, "cannot decode audio"),
        (lambda d: "  ", "empty cell"),
    ],
)
def test_processor_bad_cells(tmp_path, make, expected):
    proc = AudioProcessor(AudioConfig(normalize=False))
    with pytest.raises(CellError, match=expected):
        proc.process(make(tmp_path), base_dir=tmp_path)


def test_processor_output_and_cell_kinds(tmp_path, clips):
    proc = AudioProcessor(AudioConfig(normalize=False, duration=1.0))
    assert proc.output_shape == (64, 101)
    by_path = proc.process(clips[2], base_dir=tmp_path)  # 1.4 s clip: center-cropped
    assert by_path.shape == (64, 101) and by_path.dtype == torch.float32
    by_bytes = proc.process((tmp_path / clips[2]).read_bytes())
    samples, sr = sf.read(str(tmp_path / clips[2]), dtype="float32")
    by_array = proc.process((samples, sr))
    torch.testing.assert_close(by_bytes, by_path, rtol=0, atol=0)
    torch.testing.assert_close(by_array, by_path, rtol=0, atol=0)
    # An 8 kHz stereo array is resampled and down-mixed to the same clip.
    low = sine(440, 1.0, sr=8000)
    a = proc.process((np.stack([low, low]), 8000))
    b = proc.process((low, 8000))
    torch.testing.assert_close(a, b)
    with pytest.raises(CellError, match="channels, samples"):
        proc.process((np.stack([low, low], axis=1), 8000))  # (n, C) layout
    with pytest.raises(CellError, match="sample rate"):
        proc.process((low, 0))


def test_normalisation_fitted_on_training_clips(tmp_path, clips):
    proc = AudioProcessor(AudioConfig()).fit([*clips, "missing.wav", None], base_dir=tmp_path)
    assert proc.fit_count == len(clips)  # the missing file and empty cell are skipped
    out = torch.stack([proc.process(c, base_dir=tmp_path) for c in clips]).double()
    assert abs(float(out.mean())) < 1e-4
    assert float(out.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    raw = AudioProcessor(AudioConfig(normalize=False)).process(clips[0], base_dir=tmp_path)
    torch.testing.assert_close(
        proc.process(clips[0], base_dir=tmp_path), (raw - proc.mean) / proc.std
    )


def test_fit_respects_max_files_and_fails_when_nothing_decodes(tmp_path, clips):
    proc = AudioProcessor(AudioConfig(fit_max_files=2)).fit(clips, base_dir=tmp_path)
    assert proc.fit_count == 2
    with pytest.raises(CrossfuseError, match="none of the 2 training cells.*file not found"):
        AudioProcessor().fit(["nope.wav", "nada.wav"], base_dir=tmp_path)
    with pytest.raises(RuntimeError, match="fit"):
        AudioProcessor().process(clips[0], base_dir=tmp_path)


def spec_aug_config(**kw) -> AudioConfig:
    # No gain or shift, so the only training-time change to a 1 s clip is SpecAugment.
    return AudioConfig(augment=True, gain_db=0.0, max_shift=0.0, **kw)


def test_spec_augment_only_when_training_and_enabled(tmp_path, clips):
    plain = AudioProcessor(AudioConfig()).fit(clips, base_dir=tmp_path)
    aug = AudioProcessor(spec_aug_config()).fit(clips, base_dir=tmp_path)
    clip = clips[0]  # exactly 1 s: the random crop has nothing to choose
    ref = plain.process(clip, base_dir=tmp_path)
    torch.testing.assert_close(aug.process(clip, base_dir=tmp_path), ref)  # eval: no aug
    torch.testing.assert_close(
        plain.process(clip, base_dir=tmp_path, train=True, rng=np.random.default_rng(1)), ref
    )  # augment off: training output is the evaluation output
    a = aug.process(clip, base_dir=tmp_path, train=True, rng=np.random.default_rng(7))
    b = aug.process(clip, base_dir=tmp_path, train=True, rng=np.random.default_rng(7))
    c = aug.process(clip, base_dir=tmp_path, train=True, rng=np.random.default_rng(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("normalize", [True, False])
def test_spec_augment_masks_whole_bands_and_frames(tmp_path, clips, normalize):
    proc = AudioProcessor(spec_aug_config(normalize=normalize, freq_masks=2, time_masks=2))
    proc.fit(clips, base_dir=tmp_path)
    ref = proc.process(clips[3], base_dir=tmp_path)
    fill = 0.0 if normalize else float(ref.mean())
    masked_rows = masked_cols = 0
    for seed in range(10):
        out = proc.process(clips[3], base_dir=tmp_path, train=True, rng=np.random.default_rng(seed))
        rows = (out == fill).all(dim=1)  # (M,) fully masked mel bands
        cols = (out == fill).all(dim=0)  # (T,) fully masked frames
        changed = out != ref
        # Every changed value lies in a masked band or frame; nothing else is touched.
        assert not (changed & ~rows[:, None] & ~cols[None, :]).any()
        assert rows.sum() <= 2 * 8 and cols.sum() <= 2 * 10
        masked_rows += int(rows.sum())
        masked_cols += int(cols.sum())
    assert masked_rows > 0 and masked_cols > 0
    assert not (ref == fill).all(dim=1).any()  # the unaugmented clip has no such bands


def test_training_augmentation_gain_and_shift_are_reproducible(tmp_path, clips):
    cfg = AudioConfig(augment=True, freq_masks=0, time_masks=0, normalize=False)
    proc = AudioProcessor(cfg)
    outs = [
        proc.process(clips[2], base_dir=tmp_path, train=True, rng=np.random.default_rng(s))
        for s in (0, 0, 1)
    ]
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert outs[0].shape == proc.output_shape


def test_collate_with_absent_item(tmp_path, clips):
    proc = AudioProcessor(AudioConfig(normalize=False))
    x = proc.process(clips[0], base_dir=tmp_path)
    batch = proc.collate([x, None, x])
    assert batch["mel"].shape == (3, 64, 101) and batch["mel"].dtype == torch.float32
    assert batch["present"].tolist() == [True, False, True]
    assert batch["mel"][1].abs().sum() == 0
    assert torch.equal(batch["mel"][2], x)


def test_state_round_trip_through_json(tmp_path, clips):
    cfg = AudioConfig(n_mels=40, duration=0.5, mel_scale="htk", log="ln", augment=True)
    proc = AudioProcessor(cfg).fit(clips, base_dir=tmp_path)
    state = json.loads(json.dumps(proc.get_state()))
    again = processor_class("audio").from_state(state)
    assert isinstance(again, AudioProcessor) and again.config == cfg
    assert (again.mean, again.std, again.fit_count) == (proc.mean, proc.std, proc.fit_count)
    torch.testing.assert_close(
        again.process(clips[1], base_dir=tmp_path),
        proc.process(clips[1], base_dir=tmp_path),
        rtol=0,
        atol=0,
    )
    state["config"]["n_mel"] = 3
    with pytest.raises(ModelDirError, match="n_mel"):
        AudioProcessor.from_state(state)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"duration": 0}, "duration"),
        ({"duration": 0.01}, "too few"),
        ({"crop": "random"}, "crop"),
        ({"sample_rate": -1}, "sample_rate"),
        ({"n_mels": 4}, "freq_mask_width"),
        ({"time_mask_width": 500}, "time_mask_width"),
        ({"fit_max_files": 0}, "fit_max_files"),
        ({"freq_masks": -1}, "freq_masks"),
        ({"gain_db": -3.0}, "gain_db"),
        ({"max_shift": 2.0}, "max_shift"),
        ({"normalize": "yes"}, "normalize"),
        ({"mel_scale": "mfcc"}, "mel_scale"),
        ({"f_max": 10000.0}, "f_max"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AudioConfig(**kwargs)


def test_config_mel_is_single_sourced():
    cfg = AudioConfig(sample_rate=8000, n_mels=32, duration=2.0)
    assert cfg.mel.sample_rate == 8000 and cfg.mel.n_mels == 32
    assert (cfg.n_samples, cfg.n_frames) == (16000, 101)
