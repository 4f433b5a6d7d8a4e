"""``spectrogram-cnn``: shapes, absent rows, real sounds, a linear probe, freezing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from crossfuse.config import from_dict
from crossfuse.data.audio import AudioConfig, AudioProcessor
from crossfuse.data.processor import processor_class
from crossfuse.encoders import InputSpec, create_encoder
from crossfuse.encoders.spectrogram_cnn import SpectrogramCNNEncoder
from crossfuse.errors import ConfigError

assert_close = torch.testing.assert_close
SR = 16000
SPEC = InputSpec(name="sound", modality="audio", shape=(128, 101))
PRESENT = torch.tensor([True, False, True])


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def encoder() -> SpectrogramCNNEncoder:
    """The real ImageNet lite0 backbone, frozen (tests must not change it)."""
    enc = create_encoder("spectrogram-cnn", SPEC)
    enc.requires_grad_(False)
    return enc.train()  # frozen: stays in eval


def processor(cells: list) -> AudioProcessor:
    """The audio processor configured as the encoder asks, fitted on ``cells``."""
    name, overrides = SpectrogramCNNEncoder.processor_choice({})
    cls = processor_class(name)
    return cls(from_dict(cls.config_class, overrides)).fit(cells)


def tone(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A steady sine of random pitch and level over faint noise (1 s)."""
    t = np.arange(SR) / SR
    wave = rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * rng.uniform(200, 4000) * t)
    return (wave + 0.002 * rng.standard_normal(SR)).astype(np.float32), SR


def noise_burst(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """White noise of random level lasting 0.3–0.9 s somewhere in a second of near-silence."""
    wave = 0.002 * rng.standard_normal(SR)
    length = int(rng.uniform(0.3, 0.9) * SR)
    start = int(rng.integers(0, SR - length))
    wave[start : start + length] += rng.uniform(0.05, 0.5) * rng.standard_normal(length)
    return wave.astype(np.float32), SR


def embed(enc: SpectrogramCNNEncoder, proc: AudioProcessor, cells: list) -> torch.Tensor:
    batch = proc.collate([proc.process(c) for c in cells])
    with torch.no_grad():
        return enc(batch).pooled


def test_shapes_masks_and_absent_rows(encoder) -> None:
    torch.manual_seed(0)
    mel = torch.randn(3, 128, 101) * PRESENT.view(-1, 1, 1)
    with torch.no_grad():
        out = encoder({"mel": mel, "present": PRESENT})
        alone = encoder({"mel": mel[:1], "present": PRESENT[:1]})
    assert encoder.out_dim == 1280 and encoder.pretrained
    assert out.pooled.shape == (3, 1280) and out.tokens.shape == (3, 7, 1280)  # 224 / 32
    assert torch.equal(out.token_mask, PRESENT.view(-1, 1).expand(3, 7))
    assert torch.equal(out.pooled[1], torch.zeros(1280))
    assert torch.equal(out.tokens[1], torch.zeros(7, 1280))
    assert_close(out.pooled[:1], alone.pooled, rtol=1e-4, atol=1e-5)
    assert_close(out.pooled, out.tokens.mean(dim=1))  # equal-size time steps
    assert torch.isfinite(out.tokens).all() and out.pooled[0].abs().sum() > 0
    with torch.no_grad():
        empty = encoder({"mel": torch.zeros(2, 128, 101), "present": torch.zeros(2).bool()})
    assert empty.tokens.shape == (2, 7, 1280) and not empty.token_mask.any()
    assert not empty.pooled.any() and not empty.tokens.any()


def test_image_mapping_and_time_resolution() -> None:
    enc = create_encoder("spectrogram-cnn", SPEC, height=64, width=160, clip=2.0)
    mel = torch.linspace(-5, 5, 40 * 30).view(1, 40, 30)
    image = enc.to_image(mel)
    assert image.shape == (1, 3, 64, 160)
    assert image.min() == -1 and image.max() == 1  # ±2 σ and beyond → the pixel range ends
    assert torch.equal(image[:, 0], image[:, 2])
    with torch.no_grad():
        out = enc.eval()({"mel": mel, "present": torch.ones(1, dtype=torch.bool)})
    assert out.tokens.shape == (1, 5, 1280)  # one token per 32 pixels of time


def test_real_sounds_give_distinct_finite_embeddings(encoder) -> None:
    rng = np.random.default_rng(0)
    cells = [tone(rng), noise_burst(rng)]
    proc = processor(cells)
    assert proc.output_shape == (128, 101)
    pooled = embed(encoder, proc, cells)
    assert torch.isfinite(pooled).all()
    cosine = torch.nn.functional.cosine_similarity(pooled[0], pooled[1], dim=0)
    assert cosine < 0.95 and (pooled[0] - pooled[1]).norm() > 0.1 * pooled[0].norm()


def test_linear_probe_separates_tones_from_noise_bursts(encoder) -> None:
    rng = np.random.default_rng(1)
    cells = [tone(rng) if i % 2 == 0 else noise_burst(rng) for i in range(40)]
    labels = np.arange(40) % 2
    proc = processor(cells[:20])  # statistics from the training clips only
    x = embed(encoder, proc, cells).numpy()
    scaler = StandardScaler().fit(x[:20])
    probe = LogisticRegression(C=0.1, max_iter=2000).fit(scaler.transform(x[:20]), labels[:20])
    assert probe.score(scaler.transform(x[20:]), labels[20:]) > 0.9


def test_blocks_freezing_and_gradients() -> None:
    enc = create_encoder("spectrogram-cnn", SPEC, height=64, width=64, dim=32)  # dim ignored
    assert enc.out_dim == 1280 and len(enc.blocks()) == 18
    mel = torch.randn(2, 128, 101)
    present = torch.ones(2, dtype=torch.bool)
    enc.train()
    enc({"mel": mel, "present": present}).pooled.sum().backward()
    assert enc.mbconv[-1]._project_conv.weight.grad.abs().sum() > 0
    enc.requires_grad_(False)
    enc.train()
    assert all(not m.training for m in enc.modules())  # BatchNorm keeps ImageNet statistics
    before = enc.stem[1].running_mean.clone()
    assert not enc({"mel": mel, "present": present}).pooled.requires_grad
    assert torch.equal(enc.stem[1].running_mean, before)


def test_processor_choice_and_bad_options() -> None:
    assert SpectrogramCNNEncoder.processor_choice({}) == (
        "audio",
        {"n_mels": 128, "normalize": True},
    )
    _, overrides = SpectrogramCNNEncoder.processor_choice({"n_mels": 96, "variant": "lite1"})
    assert overrides["n_mels"] == 96
    assert from_dict(AudioConfig, {"duration": 2.0, **overrides}).n_mels == 96
    with pytest.raises(ConfigError, match="n_mels"):
        SpectrogramCNNEncoder.processor_choice({"n_mels": 0})
    with pytest.raises(ConfigError, match="width"):
        create_encoder("spectrogram-cnn", SPEC, width=0)
    with pytest.raises(ConfigError, match="clip"):
        create_encoder("spectrogram-cnn", SPEC, clip=-1.0)
    with pytest.raises(ConfigError, match="variant"):
        create_encoder("spectrogram-cnn", SPEC, variant="lite3")
    with pytest.raises(ConfigError, match="n_mels, frames"):
        create_encoder("spectrogram-cnn", InputSpec(name="s", modality="audio", shape=(3, 8, 8)))
