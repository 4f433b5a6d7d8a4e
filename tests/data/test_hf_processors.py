"""The ``hf-text``, ``hf-image`` and ``hf-audio`` column processors (tiny saved tokenizers,
image processors and feature extractors; real PNG and WAV files)."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from crossfuse.config import from_dict
from crossfuse.data.audio_io import fix_length, resample
from crossfuse.data.hf_image_processor import HFImageProcessor, HFImageProcessorConfig
from crossfuse.data.hf_text_processor import HFTextProcessor, HFTextProcessorConfig
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.processor import processor_class
from crossfuse.data.schema import Schema
from crossfuse.data.waveform import HFAudioProcessor, HFAudioProcessorConfig
from crossfuse.errors import CellError, ConfigError, ModelDirError

# [PAD] is deliberately not id 0, so padding with the tokenizer's own pad id is visible.
VOCAB = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "hello", "world", "café", "a", "b", "c"]
CLS, SEP, PAD, HELLO, WORLD = 1, 2, 3, 5, 6


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: hub ids must fail fast instead of retrying a download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Saved tokenizer, image processors and feature extractors (no model weights needed)."""
    from transformers import (
        BertTokenizer,
        ViTImageProcessor,
        Wav2Vec2FeatureExtractor,
        WhisperFeatureExtractor,
    )

    root = tmp_path_factory.mktemp("hf_processors")
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizer(str(root / "vocab.txt"), do_lower_case=True).save_pretrained(root / "tok")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    ViTImageProcessor(do_resize=False).save_pretrained(root / "noresize")
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(root / "w2v")
    WhisperFeatureExtractor(feature_size=80, chunk_length=1).save_pretrained(root / "whisper")
    return {n: str(root / n) for n in ("tok", "vit", "noresize", "w2v", "whisper")}


def text_proc(dirs: dict, max_length: int = 16) -> HFTextProcessor:
    return HFTextProcessor(HFTextProcessorConfig(model=dirs["tok"], max_length=max_length))


# --- hf-text -------------------------------------------------------------------------------


def test_text_ids_with_special_tokens_cleaning_and_truncation(dirs: dict) -> None:
    proc = text_proc(dirs)
    ids = proc.process("  Hello\x00\n  WORLD  ")  # control char dropped, case folded
    assert ids.dtype == torch.long and ids.tolist() == [CLS, HELLO, WORLD, SEP]
    assert proc.process("ｈｅｌｌｏ").tolist() == [CLS, HELLO, SEP]  # NFKC: full-width → ASCII
    assert proc.process(42).tolist() == [CLS, 0, SEP]  # unknown → [UNK]
    long = text_proc(dirs, max_length=4).process("hello world hello world hello")
    assert long.tolist() == [CLS, HELLO, WORLD, SEP]


@pytest.mark.parametrize("cell", [None, float("nan"), "", "   ", "\x00\x01"])
def test_text_empty_cells_raise(dirs: dict, cell: object) -> None:
    with pytest.raises(CellError, match="empty text"):
        text_proc(dirs).process(cell)


def test_text_collate_pads_with_the_tokenizer_pad_id(dirs: dict) -> None:
    proc = text_proc(dirs)
    batch = proc.collate([proc.process("hello world hello"), None, proc.process("world")])
    assert batch["input_ids"].tolist() == [
        [CLS, HELLO, WORLD, HELLO, SEP],
        [PAD, PAD, PAD, PAD, PAD],
        [CLS, WORLD, SEP, PAD, PAD],
    ]
    assert batch["attention_mask"].tolist() == [[1] * 5, [0] * 5, [1, 1, 1, 0, 0]]
    assert batch["present"].tolist() == [True, False, True]
    empty = proc.collate([None, None])
    assert empty["input_ids"].tolist() == [[PAD], [PAD]]
    assert not empty["attention_mask"].any()


def test_text_state_is_the_config_and_pickling_drops_the_tokenizer(dirs: dict) -> None:
    proc = text_proc(dirs, max_length=8)
    proc.process("hello")  # loads the tokenizer
    state = proc.get_state()
    assert state == {"config": {"model": dirs["tok"], "max_length": 8}}
    json.dumps(state)
    again = HFTextProcessor.from_state(state)
    assert again.process("hello world").tolist() == [CLS, HELLO, WORLD, SEP]
    blob = pickle.dumps(proc)
    assert len(blob) < 1000  # the tokenizer does not travel to DataLoader workers
    worker = pickle.loads(blob)
    assert worker._tokenizer is None and worker.process("world").tolist() == [CLS, WORLD, SEP]
    with pytest.raises(ModelDirError, match="hf-text"):
        HFTextProcessor.from_state({"config": {"model": dirs["tok"], "max_length": 0}})


def test_text_config_and_offline_errors(dirs: dict) -> None:
    with pytest.raises(ConfigError, match="max_length"):
        HFTextProcessorConfig(model=dirs["tok"], max_length=1)
    with pytest.raises(ConfigError, match="hub id"):
        HFTextProcessorConfig(model=" ")
    proc = HFTextProcessor(HFTextProcessorConfig(model="nobody-xyz/tokenizer-missing"))
    with pytest.raises(ConfigError) as err:
        proc.process("hello")
    assert "nobody-xyz/tokenizer-missing" in str(err.value) and "local directory" in str(err.value)


def test_default_model_is_the_bundled_minilm_tokenizer() -> None:
    proc = HFTextProcessor()
    assert proc.config.model == "default"
    assert proc.process("Hello world").tolist() == [101, 7592, 2088, 102]
    assert proc.pad_id == 0


# --- hf-image ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40×20 RGB PNG: red left half, blue right half."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20, 0] = 255
    arr[:, 20:, 2] = 255
    path = tmp_path_factory.mktemp("png") / "half.png"
    Image.fromarray(arr).save(path)
    return path


def test_image_pixels_match_the_hf_processor(dirs: dict, png: Path) -> None:
    from transformers import ViTImageProcessor

    proc = HFImageProcessor(HFImageProcessorConfig(model=dirs["vit"]))
    assert proc.output_shape == (3, 32, 32)
    x = proc.process(png.name, base_dir=png.parent)  # relative to the table's folder
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
    direct = ViTImageProcessor(size={"height": 32, "width": 32})
    expected = direct(images=Image.open(png).convert("RGB"), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(x, expected[0])
    assert x[0, :, :8].mean() > 0.9 and x[2, :, -8:].mean() > 0.9  # red left, blue right
    torch.testing.assert_close(proc.process(png.read_bytes()), x)
    torch.testing.assert_close(proc.process(np.asarray(Image.open(png))), x)


def test_image_grayscale_and_bad_cells(dirs: dict, tmp_path: Path, png: Path) -> None:
    proc = HFImageProcessor(HFImageProcessorConfig(model=dirs["vit"]))
    Image.fromarray(np.full((10, 10), 200, np.uint8), mode="L").save(tmp_path / "g.png")
    gray = proc.process(tmp_path / "g.png")
    assert gray.shape == (3, 32, 32) and torch.allclose(gray[0], gray[2])
    (tmp_path / "cut.png").write_bytes(png.read_bytes()[:60])
    with pytest.raises(CellError, match="cannot decode image"):
        proc.process(tmp_path / "cut.png")
    with pytest.raises(CellError, match="file not found"):
        proc.process(tmp_path / "missing.png")
    with pytest.raises(CellError, match="empty cell"):
        proc.process(None)


def test_image_collate_state_and_pickle(dirs: dict, png: Path) -> None:
    proc = HFImageProcessor(HFImageProcessorConfig(model=dirs["vit"]))
    x = proc.process(png)
    batch = proc.collate([None, x])
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert batch["present"].tolist() == [False, True]
    assert not batch["pixel_values"][0].any() and torch.equal(batch["pixel_values"][1], x)
    state = proc.get_state()
    assert state == {"config": {"model": dirs["vit"]}}
    worker = pickle.loads(pickle.dumps(proc))
    assert worker._hf is None
    torch.testing.assert_close(HFImageProcessor.from_state(state).process(png), x)
    torch.testing.assert_close(worker.process(png), x)


def test_image_processor_without_fixed_size_is_resized_to_one_shape(dirs, png) -> None:
    proc = HFImageProcessor(HFImageProcessorConfig(model=dirs["noresize"]))
    assert proc.output_shape == (3, 256, 256)  # what a square image gives
    assert proc.process(png).shape == (3, 256, 256)  # a 40×20 image is stretched to it


def test_image_config_and_offline_errors() -> None:
    with pytest.raises(ConfigError, match="needs a model"):
        HFImageProcessorConfig()
    proc = HFImageProcessor(HFImageProcessorConfig(model="nobody-xyz/vit-missing"))
    with pytest.raises(ConfigError, match="local directory"):
        _ = proc.output_shape


# --- hf-audio ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 0.25-s 440-Hz tone at 8 kHz, 16-bit PCM."""
    t = np.arange(2000) / 8000
    path = tmp_path_factory.mktemp("wav") / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), 8000, subtype="PCM_16")
    return path


def test_wav2vec2_input_values_are_resampled_padded_and_normalised(dirs, wav) -> None:
    from transformers import Wav2Vec2FeatureExtractor

    proc = HFAudioProcessor(HFAudioProcessorConfig(model=dirs["w2v"], duration=0.5))
    assert proc.sample_rate == 16000 and proc.key == "input_values"
    assert proc.output_shape == (8000,)
    x = proc.process(wav.name, base_dir=wav.parent)
    samples, sr = sf.read(wav, dtype="float32")
    wave = fix_length(resample(samples, sr, 16000), 8000, "center")
    fe = Wav2Vec2FeatureExtractor(sampling_rate=16000)
    expected = fe(wave, sampling_rate=16000, return_tensors="pt")["input_values"][0]
    torch.testing.assert_close(x, expected)
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2  # zero mean, unit var
    stereo = (np.stack([samples, samples]), 8000)  # (channels, samples) array cell
    torch.testing.assert_close(proc.process(stereo), x, atol=1e-4, rtol=0)
    torch.testing.assert_close(proc.process(wav.read_bytes()), x)
    batch = proc.collate([x, None])
    assert batch["input_values"].shape == (2, 8000) and batch["present"].tolist() == [True, False]
    assert "content_frames" not in batch


def test_whisper_features_and_content_frames(dirs: dict, wav: Path) -> None:
    proc = HFAudioProcessor(HFAudioProcessorConfig(model=dirs["whisper"], duration=0.25))
    assert proc.key == "input_features" and proc.output_shape == (80, 100)  # 1-s window
    x = proc.process(wav)
    assert x.shape == (80, 100) and torch.isfinite(x).all()
    batch = proc.collate([None, x, x])
    assert batch["input_features"].shape == (3, 80, 100)
    assert batch["content_frames"].tolist() == [0, 25, 25]  # 0.25 s of 10-ms frames
    full = HFAudioProcessor(HFAudioProcessorConfig(model=dirs["whisper"], duration=1.0))
    assert "content_frames" not in full.collate([full.process(wav)])  # clip fills the window


def test_audio_bad_cells(dirs: dict, tmp_path: Path, wav: Path) -> None:
    proc = HFAudioProcessor(HFAudioProcessorConfig(model=dirs["w2v"]))
    with pytest.raises(CellError, match="audio bytes are empty"):
        proc.process(b"")
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(CellError, match="cannot decode audio"):
        proc.process(tmp_path / "notes.wav")
    (tmp_path / "cut.wav").write_bytes(wav.read_bytes()[:1000])
    with pytest.raises(CellError, match="truncated"):
        proc.process(tmp_path / "cut.wav")
    with pytest.raises(CellError, match="NaN"):
        proc.process((np.array([0.0, np.nan, 0.1] * 100), 8000))
    with pytest.raises(CellError, match="empty cell"):
        proc.process(float("nan"))


def test_audio_state_pickle_and_config_errors(dirs: dict, wav: Path) -> None:
    proc = HFAudioProcessor(HFAudioProcessorConfig(model=dirs["w2v"], duration=0.5))
    x = proc.process(wav)
    state = proc.get_state()
    assert state == {"config": {"model": dirs["w2v"], "duration": 0.5}}
    worker = pickle.loads(pickle.dumps(proc))
    assert worker._hf is None
    torch.testing.assert_close(worker.process(wav), x)
    torch.testing.assert_close(
        HFAudioProcessor.from_state(json.loads(json.dumps(state))).process(wav), x
    )
    for bad in (0, -1.0, 1e6, True, "1"):
        with pytest.raises(ConfigError, match="duration"):
            HFAudioProcessorConfig(model=dirs["w2v"], duration=bad)
    with pytest.raises(ConfigError, match="needs a model"):
        HFAudioProcessorConfig()
    with pytest.raises(ModelDirError, match="hf-audio"):
        HFAudioProcessor.from_state({"config": {"model": dirs["w2v"], "rate": 3}})
    with pytest.raises(ConfigError, match="local directory"):
        HFAudioProcessor(HFAudioProcessorConfig(model="nobody-xyz/w2v-missing")).process(wav)


# --- registry and Preprocessor ---------------------------------------------------------------


def test_registered_and_chosen_per_column_by_the_preprocessor(dirs, png, wav) -> None:
    for name, modality in (("hf-text", "text"), ("hf-image", "image"), ("hf-audio", "audio")):
        assert processor_class(name).modality == modality
    built = from_dict(HFTextProcessorConfig, {"model": dirs["tok"], "max_length": 9})
    assert built.max_length == 9
    schema = Schema(
        columns={"caption": "text", "photo": "image", "sound": "audio"},
        labels=["label"],
        tasks={"label": "classification"},
    )
    choices = {
        "caption": ("hf-text", {"model": dirs["tok"], "max_length": 12}),
        "photo": ("hf-image", {"model": dirs["vit"]}),
        "sound": ("hf-audio", {"model": dirs["w2v"], "duration": 0.5}),
    }
    pre = Preprocessor(schema, processors=choices)
    assert isinstance(pre.columns["caption"], HFTextProcessor)
    assert pre.columns["caption"].config.max_length == 12
    assert isinstance(pre.columns["photo"], HFImageProcessor)
    assert isinstance(pre.columns["sound"], HFAudioProcessor)
    state = json.loads(json.dumps(pre.get_state()))
    again = Preprocessor.from_state(state)
    assert again.columns["sound"].config.duration == 0.5
    assert again.columns["caption"].process("hello").tolist() == [CLS, HELLO, SEP]
    buf = io.BytesIO()
    pickle.dump(again, buf)  # a whole fitted preprocessing goes to DataLoader workers
    assert buf.tell() < 20_000
