"""Per-modality corruptions: determinism, row selection, strength and processor round trip."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from crossfuse.data.audio import AudioConfig, AudioProcessor
from crossfuse.data.image import ImageConfig, ImageProcessor
from crossfuse.data.text import TextConfig, TextProcessor
from crossfuse.errors import ConfigError
from crossfuse.robustness.corruptions import (
    MODALITIES,
    Corruption,
    corrupt_column,
    corruption_names,
    get_corruption,
)
from crossfuse.robustness.corruptions_text import QWERTY_NEIGHBOURS

SR = 8000
LONG_TEXT = "The quick brown fox jumps over the lazy dog while Seven Wizards hum. " * 15
ALL = [(m, n) for m in MODALITIES for n in corruption_names(m)]
DETERMINISTIC = {"blur", "contrast", "drop"}  # no random draws


def _rgb(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # (H, W, 3)


def _wave(freq: float, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    mono = 0.4 + 0.3 * np.sin(2 * np.pi * freq * t)  # never exactly zero
    return np.stack([mono * (c + 1) / channels for c in range(channels)]).astype(np.float32)


@pytest.fixture
def columns(tmp_path: Path) -> dict[str, list]:
    """Four cells per modality: files on disk, in-memory arrays and plain values."""
    for i in range(2):
        Image.fromarray(_rgb(i)).save(tmp_path / f"img{i}.png")
        sf.write(tmp_path / f"snd{i}.wav", _wave(300 + 100 * i).T, SR, subtype="FLOAT")
    return {
        "image": ["img0.png", "img1.png", _rgb(5), _rgb(6)[:, :, 0]],
        "audio": ["snd0.wav", "snd1.wav", (_wave(700), SR), (_wave(900, channels=2), SR)],
        "text": ["Hi", "a cat sat on the mat", LONG_TEXT, "Sensor readings looked odd"],
        "tabular": [1.5, "red", 7, 2.25],
    }


def _run(cells, name, modality, rows, seed=0, base_dir=None, **strength):
    mask = np.zeros(len(cells), dtype=bool)
    mask[list(rows)] = True
    return corrupt_column(cells, name, modality, mask, base_dir=base_dir, seed=seed, **strength)


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return a[1] == b[1] and np.array_equal(a[0], b[0])
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def test_registry_order_and_descriptions() -> None:
    assert corruption_names("image") == ["gaussian-noise", "blur", "occlusion", "contrast"]
    assert corruption_names("audio") == ["white-noise", "dropout", "time-shift"]
    assert corruption_names("text") == ["char-swap", "char-delete", "keyboard-typo"]
    assert corruption_names("tabular") == ["drop", "swap"]
    noise = get_corruption("gaussian-noise", "image")
    assert noise == Corruption(
        "gaussian-noise", "image", "Gaussian pixel noise, σ = 0.3 of the range", {"sigma": 0.3}
    )
    assert "σ = 0.1" in get_corruption("gaussian-noise", "image", sigma=0.1).description
    assert "SNR = 0 dB" in get_corruption("white-noise", "audio").description
    assert "25%" in get_corruption("occlusion", "image").description


@pytest.mark.parametrize(("modality", "name"), ALL)
def test_rows_seed_and_nesting(columns, tmp_path, modality, name) -> None:
    cells = columns[modality]
    first = _run(cells, name, modality, [1, 2], seed=3, base_dir=tmp_path)
    again = _run(cells, name, modality, [1, 2], seed=3, base_dir=tmp_path)
    nested = _run(cells, name, modality, [0, 1, 2, 3], seed=3, base_dir=tmp_path)
    assert first[0] is cells[0] and first[3] is cells[3]  # unselected: same objects
    assert nested[0] is not cells[0]
    for i in (1, 2):
        assert _same(first[i], again[i]) and _same(first[i], nested[i])
        assert not _same(first[i], cells[i]) or modality == "tabular"
    if name not in DETERMINISTIC:
        other = _run(cells, name, modality, [1, 2], seed=4, base_dir=tmp_path)
        assert not all(_same(first[i], other[i]) for i in (1, 2))


@pytest.mark.parametrize("name", corruption_names("image"))
@pytest.mark.parametrize("channels", [1, 3])
def test_image_output_read_by_processor(columns, tmp_path, name, channels) -> None:
    proc = ImageProcessor(ImageConfig(size=16, channels=channels))
    for i, cell in enumerate(columns["image"]):
        out = _run(columns["image"], name, "image", [i], base_dir=tmp_path)[i]
        assert out.dtype == np.uint8 and out.shape[:2] == (24, 32)  # original size
        assert out.ndim == (2 if i == 3 else 3)  # single-channel sources stay single
        clean = proc.process(cell, base_dir=tmp_path)
        assert not torch.allclose(proc.process(out), clean)


@pytest.mark.parametrize("name", corruption_names("audio"))
def test_audio_output_read_by_processor(columns, tmp_path, name) -> None:
    proc = AudioProcessor(AudioConfig(sample_rate=SR, duration=0.5, n_mels=32, normalize=False))
    for i, cell in enumerate(columns["audio"]):
        out = _run(columns["audio"], name, "audio", [i], base_dir=tmp_path)[i]
        samples, sr = out
        assert sr == SR and samples.dtype == np.float32
        assert samples.shape == (2 if i == 3 else 1, int(SR * 0.5))
        clean = proc.process(cell, base_dir=tmp_path)
        assert not torch.allclose(proc.process(out), clean)


@pytest.mark.parametrize("name", corruption_names("text"))
def test_text_output_read_by_processor(columns, name) -> None:
    cells = columns["text"]
    proc = TextProcessor(TextConfig(tokenizer="char")).fit(cells)
    out = _run(cells, name, "text", range(4))
    for clean, bad in zip(cells, out, strict=True):
        assert isinstance(bad, str)
        a, b = proc.process(clean), proc.process(bad)
        assert a.shape != b.shape or not torch.equal(a, b)


def test_gaussian_noise_std() -> None:
    grey = [np.full((64, 64, 3), 128, dtype=np.uint8)]
    for sigma, expected in ((None, 0.3 * 255), (0.1, 0.1 * 255)):
        kw = {} if sigma is None else {"sigma": sigma}
        out = _run(grey, "gaussian-noise", "image", [0], **kw)[0]
        assert abs((out.astype(float) - 128).std() / expected - 1) < 0.2


def test_occlusion_blur_and_contrast_strength() -> None:
    checker = (np.indices((40, 40)).sum(0) % 2 * 255).astype(np.uint8)  # no 128 anywhere
    out = _run([checker], "occlusion", "image", [0])[0]
    ys, xs = np.nonzero(out == 128)
    assert abs(len(ys) / out.size - 0.25) < 0.01
    assert np.ptp(ys) == np.ptp(xs) and len(ys) == (np.ptp(ys) + 1) ** 2  # one filled square
    blurred = _run([checker], "blur", "image", [0])[0].astype(float)
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.2 * 255  # edges largely smoothed away
    img = _rgb(1)
    flat = _run([img], "contrast", "image", [0])[0].astype(float)
    assert abs(flat.std() / img.std() - 0.3) < 0.02 and abs(flat.mean() - img.mean()) < 1


@pytest.mark.parametrize("snr", [0.0, 6.0, -3.0])
def test_white_noise_reaches_snr(snr) -> None:
    clean = _wave(440)
    kw = {} if snr == 0.0 else {"snr_db": snr}
    noisy, _ = _run([(clean, SR)], "white-noise", "audio", [0], **kw)[0]
    noise = noisy.astype(float) - clean
    measured = 10 * np.log10(np.mean(clean.astype(float) ** 2) / np.mean(noise**2))
    assert abs(measured - snr) < 0.5


def test_white_noise_on_silence_has_fixed_rms() -> None:
    noisy, _ = _run([(np.zeros((1, 4000), np.float32), SR)], "white-noise", "audio", [0])[0]
    assert np.sqrt(np.mean(noisy.astype(float) ** 2)) == pytest.approx(0.01, rel=0.01)


def test_dropout_and_time_shift_strength() -> None:
    clean = _wave(440, seconds=2.0)  # strictly positive samples
    dropped, _ = _run([(clean, SR)], "dropout", "audio", [0])[0]
    assert abs(np.mean(dropped == 0) - 0.5) < 0.03
    assert np.array_equal(dropped[dropped != 0], clean[dropped != 0])
    signs = set()
    for seed in range(8):
        shifted, _ = _run([(clean, SR)], "time-shift", "audio", [0], seed=seed)[0]
        assert shifted.shape == clean.shape
        zeros = int(np.sum(shifted[0] == 0))
        assert 0.1 * clean.shape[1] - 1 <= zeros <= 0.4 * clean.shape[1] + 1
        head = shifted[0, 0] == 0  # delayed: zeros at the start
        signs.add(head)
        kept = shifted[0, zeros:] if head else shifted[0, : clean.shape[1] - zeros]
        assert np.array_equal(kept, clean[0, : len(kept)] if head else clean[0, zeros:])
    assert signs == {True, False}


def test_text_edit_rates_and_typo_neighbours() -> None:
    n = len(LONG_TEXT)
    deleted = _run([LONG_TEXT], "char-delete", "text", [0])[0]
    assert len(deleted) == n - round(0.1 * n)
    swapped = _run([LONG_TEXT], "char-swap", "text", [0])[0]
    assert sorted(swapped) == sorted(LONG_TEXT)
    assert abs(sum(a != b for a, b in zip(swapped, LONG_TEXT, strict=True)) / n - 0.1) < 0.01
    typo = _run([LONG_TEXT], "keyboard-typo", "text", [0])[0]
    changed = [(a, b) for a, b in zip(LONG_TEXT, typo, strict=True) if a != b]
    assert len(changed) == round(0.1 * sum(c.isalpha() for c in LONG_TEXT))
    for a, b in changed:
        assert b.lower() in QWERTY_NEIGHBOURS[a.lower()] and a.isupper() == b.isupper()
    for name in corruption_names("text"):  # short texts get at least one edit
        out = _run(["Hi", "ok.", "a b"], name, "text", [0, 1, 2])
        assert all(a != b for a, b in zip(out, ["Hi", "ok.", "a b"], strict=True))


def test_tabular_drop_and_swap() -> None:
    cells = [10.0, None, 30.0, float("nan"), "", 60.0, 70.0]
    assert _run(cells, "drop", "tabular", [0, 2])[:3] == [None, None, None]
    out = _run(np.array(cells, dtype=object), "swap", "tabular", range(7))  # a pandas column
    assert out[1] is None and out[3] is cells[3] and out[4] == ""  # missing stays missing
    for i in (0, 2, 5, 6):
        assert out[i] in {10.0, 30.0, 60.0, 70.0} - {cells[i]}  # another row's value
    drawn = {_run(cells, "swap", "tabular", [0], seed=s)[0] for s in range(40)}
    assert drawn == {30.0, 60.0, 70.0}


def test_image_sources_keep_their_channels() -> None:
    grey = Image.fromarray(_rgb(2)[:, :, 0])
    buf = io.BytesIO()
    grey.save(buf, format="PNG")
    cells = [grey, grey.convert("LA"), buf.getvalue(), Image.fromarray(_rgb(3)).convert("RGBA")]
    out = _run(cells, "occlusion", "image", range(4))
    assert [o.shape for o in out] == [(24, 32), (24, 32), (24, 32), (24, 32, 3)]
    assert out[0].dtype == np.uint8 and np.mean(out[0] != np.asarray(grey)) > 0.2


def test_undecodable_cells_left_unchanged(tmp_path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "bad.wav").write_text("not audio either\n")
    images = ["missing.png", "bad.png", b"\x89PNG broken", "", None, np.zeros((2, 2), np.float32)]
    out = _run(images, "gaussian-noise", "image", range(6), base_dir=tmp_path)
    assert all(a is b for a, b in zip(out, images, strict=True))
    sounds = ["missing.wav", "bad.wav", b"", (np.zeros(0, np.float32), SR), float("nan")]
    out = _run(sounds, "white-noise", "audio", range(5), base_dir=tmp_path)
    assert all(a is b for a, b in zip(out, sounds, strict=True))
    texts = [None, "", "   ", float("nan")]
    out = _run(texts, "char-swap", "text", range(4))
    assert all(a is b for a, b in zip(out, texts, strict=True))


@pytest.mark.parametrize(
    ("call", "needles"),
    [
        (lambda: get_corruption("blurr", "image"), ["'blurr'", "gaussian-noise, blur, occlusion"]),
        (lambda: get_corruption("white-noise", "image"), ["an audio corruption", "contrast"]),
        (lambda: corruption_names("video"), ["'video'", "image, audio, text, tabular"]),
        (lambda: get_corruption("missing", "tabular"), ["valid tabular corruptions: drop, swap"]),
        (lambda: get_corruption("blur", "image", sigma=1), ["'sigma'", "valid options: radius"]),
        (lambda: get_corruption("drop", "tabular", p=1), ["takes no options"]),
        (lambda: get_corruption("occlusion", "image", area=1.5), ["area must be in (0, 1]"]),
        (lambda: get_corruption("dropout", "audio", fraction="x"), ["fraction"]),
        (lambda: get_corruption("time-shift", "audio", min_shift=0.5), ["min_shift (0.5)"]),
    ],
)
def test_config_errors_name_valid_options(call, needles) -> None:
    with pytest.raises(ConfigError) as err:
        call()
    for needle in needles:
        assert needle in str(err.value)


def test_bad_rows_and_seed() -> None:
    with pytest.raises(ConfigError, match="boolean array"):
        corrupt_column([1, 2], "drop", "tabular", np.array([0, 1]), base_dir=None, seed=0)
    with pytest.raises(ConfigError, match=r"one entry per cell \(2\)"):
        corrupt_column([1, 2], "drop", "tabular", np.ones(3, bool), base_dir=None, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        corrupt_column([1, 2], "drop", "tabular", np.ones(2, bool), base_dir=None, seed=-1)
    with pytest.raises(ConfigError, match="sigma"):
        corrupt_column([], "gaussian-noise", "image", np.zeros(0, bool), base_dir=None, seed=0,
                       sigma=-1)  # fmt: skip
