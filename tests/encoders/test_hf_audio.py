"""The ``hf-audio`` encoder on tiny wav2vec2, Whisper and AST models saved to a temp folder."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import soundfile as sf
import torch

from crossfuse.data.waveform import HFAudioProcessor, HFAudioProcessorConfig
from crossfuse.encoders import InputSpec, create_encoder
from crossfuse.encoders.hf_audio import HFAudioEncoder, content_mask
from crossfuse.errors import ConfigError

TINY = {"num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: hub ids must fail fast instead of retrying a download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny checkpoints + feature extractors: wav2vec2, Whisper (1-s window), AST."""
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    root = tmp_path_factory.mktemp("hf_audio")
    torch.manual_seed(0)
    w2v = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        conv_dim=(16, 16),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        num_feat_extract_layers=2,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        layerdrop=0.0,  # no randomly skipped layers: every layer must get a gradient
        mask_time_prob=0.0,
        **TINY,
    )
    Wav2Vec2Model(w2v).save_pretrained(root / "wav2vec2")
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(root / "wav2vec2")
    whisper = WhisperConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=50,  # 100 mel frames = a 1-s window at hop 160
        max_target_positions=8,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    WhisperModel(whisper).save_pretrained(root / "whisper")
    WhisperFeatureExtractor(feature_size=80, chunk_length=1).save_pretrained(root / "whisper")
    ast = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_mel_bins=32,
        max_length=64,
        frequency_stride=10,
        time_stride=10,
        **TINY,
    )
    ASTModel(ast).save_pretrained(root / "ast")
    ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(root / "ast")
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, **TINY)
    ).save_pretrained(root / "vision")
    return {name: str(root / name) for name in ("wav2vec2", "whisper", "ast", "vision")}


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two 8-kHz WAV files (resampled to the extractors' 16 kHz): 0.3-s and 0.8-s tones."""
    root = tmp_path_factory.mktemp("wavs")
    paths = []
    for i, (freq, seconds) in enumerate([(440.0, 0.3), (1000.0, 0.8)]):
        t = np.arange(int(8000 * seconds)) / 8000
        sf.write(root / f"tone{i}.wav", 0.5 * np.sin(2 * np.pi * freq * t), 8000, subtype="PCM_16")
        paths.append(root / f"tone{i}.wav")
    return paths


def encode(model: str, cells: list, duration: float = 0.5, **options) -> tuple:
    """Process ``cells`` (None = absent) with the hf-audio processor and encode them."""
    proc = HFAudioProcessor(HFAudioProcessorConfig(model=model, duration=duration))
    batch = proc.collate([None if c is None else proc.process(c) for c in cells])
    spec = InputSpec("sound", "audio", shape=proc.output_shape, processor="hf-audio")
    enc = HFAudioEncoder(spec, model=model, **options).eval()
    with torch.no_grad():
        return enc, batch, enc(batch)


def loss(pooled: torch.Tensor) -> torch.Tensor:
    """A random projection (a plain sum of LayerNorm outputs has zero gradient)."""
    return (pooled * torch.randn(pooled.shape, generator=torch.Generator().manual_seed(0))).sum()


def test_wav2vec2_on_resampled_wavs(models: dict, wavs: list) -> None:
    from transformers import Wav2Vec2Model

    enc, batch, out = encode(models["wav2vec2"], [wavs[0], None, wavs[1]])
    assert enc.key == "input_values" and enc.out_dim == 32 and enc.pretrained
    assert batch["input_values"].shape == (3, 8000)  # 0.5 s at 16 kHz
    assert out.pooled.shape == (3, 32) and out.tokens.shape == (3, 799, 32)  # 20-ms frames
    assert out.token_mask.sum(1).tolist() == [799, 0, 799]
    assert torch.equal(out.pooled[1], torch.zeros(32))
    assert torch.equal(out.tokens[1], torch.zeros(799, 32))
    reference = Wav2Vec2Model.from_pretrained(models["wav2vec2"]).eval()
    with torch.no_grad():
        ref = reference(batch["input_values"][[0, 2]]).last_hidden_state
    torch.testing.assert_close(out.tokens[[0, 2]], ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pooled[[0, 2]], ref.mean(1), atol=1e-5, rtol=0)
    names = [type(b).__name__ for b in enc.blocks()]
    assert names[:2] == ["Wav2Vec2FeatureEncoder", "Wav2Vec2FeatureProjection"]
    assert names[-2:] == ["Wav2Vec2EncoderLayer", "Wav2Vec2EncoderLayer"]


def test_whisper_encoder_masks_the_padding_window(models: dict, wavs: list) -> None:
    enc, batch, out = encode(models["whisper"], [wavs[1], None], duration=0.5)
    assert enc.key == "input_features" and type(enc.model).__name__ == "WhisperEncoder"
    assert batch["input_features"].shape == (2, 80, 100)  # padded to the 1-s window
    assert batch["content_frames"].tolist() == [50, 0]  # 0.5 s of 10-ms frames
    assert out.tokens.shape == (2, 50, 32)  # the encoder halves the frame rate
    assert out.token_mask.sum(1).tolist() == [25, 0]
    assert torch.equal(out.tokens[0, 25:], torch.zeros(25, 32))
    torch.testing.assert_close(out.pooled[0], out.tokens[0, :25].mean(0))
    names = [type(b).__name__ for b in enc.blocks()]
    assert names == ["Conv1d", "Conv1d", "Embedding", "WhisperEncoderLayer", "LayerNorm"]


def test_ast_spectrogram_patches(models: dict, wavs: list) -> None:
    enc, batch, out = encode(models["ast"], [None, wavs[0]])
    assert batch["input_values"].shape == (2, 64, 32)  # (frames, mel bins)
    assert out.tokens.shape == (2, 12, 32)  # CLS + distillation + 2×5 patches
    assert out.token_mask.sum(1).tolist() == [0, 12]
    assert torch.equal(out.pooled[0], torch.zeros(32))
    assert [type(b).__name__ for b in enc.blocks()][1:3] == ["ASTLayer", "ASTLayer"]


@pytest.mark.parametrize("name", ["wav2vec2", "whisper", "ast"])
def test_gradients_reach_the_model(models: dict, wavs: list, name: str) -> None:
    proc = HFAudioProcessor(HFAudioProcessorConfig(model=models[name], duration=0.5))
    batch = proc.collate([proc.process(wavs[0]), None, proc.process(wavs[1])])
    spec = InputSpec("sound", "audio", shape=proc.output_shape, processor="hf-audio")
    enc = HFAudioEncoder(spec, model=models[name]).train()
    loss(enc(batch).pooled).backward()
    layer = enc.blocks()[-2]  # the last transformer layer
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
    first = enc.blocks()[0]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in first.parameters())


def test_all_rows_absent(models: dict) -> None:
    _, _, out = encode(models["wav2vec2"], [None, None])
    assert out.pooled.shape == (2, 32) and not out.pooled.any() and not out.token_mask.any()


def test_content_mask() -> None:
    mask = content_mask(torch.tensor([50, 100, 1]), n_features=100, n_tokens=50)
    assert mask.sum(1).tolist() == [25, 50, 1]
    assert mask[0, :25].all() and not mask[0, 25:].any()


def test_registry_processor_choice_and_errors(models: dict, tmp_path: Path) -> None:
    spec = InputSpec("sound", "audio", shape=(8000,), processor="hf-audio")
    enc = create_encoder("hf-audio", spec, model=models["wav2vec2"], dim=64, duration=0.5)
    assert isinstance(enc, HFAudioEncoder) and enc.out_dim == 32
    choice = HFAudioEncoder.processor_choice({"model": models["ast"], "duration": 2.0})
    assert choice == ("hf-audio", {"model": models["ast"], "duration": 2.0})
    with pytest.raises(ConfigError, match="needs a model"):
        HFAudioEncoder.processor_choice({})
    with pytest.raises(ConfigError, match="pooling"):
        HFAudioEncoder(spec, model=models["wav2vec2"], pooling="cls")
    with pytest.raises(ConfigError, match="'hf-audio' column processor"):
        HFAudioEncoder(InputSpec("s", "audio", shape=(64, 101), processor="audio"), model="x")
    with pytest.raises(ConfigError, match="not an audio encoder"):
        HFAudioEncoder(spec, model=models["vision"])
    with pytest.raises(ConfigError) as err:
        HFAudioEncoder(spec, model="nobody-xyz/wav2vec2-missing")
    assert "nobody-xyz/wav2vec2-missing" in str(err.value) and "local directory" in str(err.value)
