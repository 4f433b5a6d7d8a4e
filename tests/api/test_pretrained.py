"""Pretrained encoders through the public API: tiny local HF models and the real presets."""

from pathlib import Path

import huggingface_hub
import numpy as np
import pandas as pd
import pytest
import torch

from crossfuse.api import FusionPredictor
from crossfuse.data.builtin.demo import build_demo
from tests.conftest import write_png, write_wav

WORDS = ["alpha", "beta", "item", "good", "bad"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A 1-layer BERT + WordPiece vocab, a tiny ViT and a tiny wav2vec2, saved locally."""
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizer,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    root = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    tiny = {
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
    }
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (root / "bert").mkdir()
    (root / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(root / "bert" / "vocab.txt")).save_pretrained(root / "bert")
    BertModel(
        BertConfig(vocab_size=len(vocab), max_position_embeddings=128, **tiny)
    ).save_pretrained(root / "bert")
    ViTModel(ViTConfig(image_size=16, patch_size=8, **tiny)).save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(root / "vit")
    Wav2Vec2Model(
        Wav2Vec2Config(
            conv_dim=(8, 8),
            conv_kernel=(10, 3),
            conv_stride=(5, 2),
            num_feat_extract_layers=2,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            layerdrop=0.0,
            mask_time_prob=0.0,
            **tiny,
        )
    ).save_pretrained(root / "w2v")
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(root / "w2v")
    return {k: str(root / k) for k in ("bert", "vit", "w2v")}


@pytest.fixture(scope="module")
def av_text_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("avt")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        cls = i % 2
        rows.append(
            {
                "text": f"{['alpha', 'beta'][cls]} item {rng.choice(['good', 'bad'])}",
                "image": write_png(folder / f"i{i}.png", 60 + 120 * cls),
                "audio": write_wav(folder / f"a{i}.wav", 300 + 500 * cls, seconds=0.3),
                "label": ["a", "b"][cls],
            }
        )
    pd.DataFrame(rows).to_csv(folder / "t.csv", index=False)
    return folder / "t.csv"


@pytest.mark.parametrize("finetune", ["full", "frozen"])
def test_tiny_local_hf_models_train(tiny_models, av_text_table, tmp_path, finetune) -> None:
    config = {
        "model": {
            "hidden": 16,
            "encoders": {
                "text": {
                    "name": "hf-text",
                    "finetune": finetune,
                    "options": {"model": tiny_models["bert"]},
                },
                "image": {
                    "name": "hf-vision",
                    "finetune": finetune,
                    "options": {"model": tiny_models["vit"]},
                },
                "audio": {
                    "name": "hf-audio",
                    "finetune": finetune,
                    "options": {"model": tiny_models["w2v"], "duration": 0.3},
                },
            },
        },
        "train": {"epochs": 2, "batch_size": 8, "patience": 0, "cache_dir": str(tmp_path / "c")},
    }
    p = FusionPredictor("label", config=config, progress=False)
    before = {
        k: v.clone()
        for k, v in p._prepare(av_text_table, None, None, None, 0)[-1].state_dict().items()
        if k.startswith("encoders.text.")
    }
    p.fit(av_text_table, seed=0)
    assert {type(e).__name__ for e in p.model_.encoders.values()} == {
        "HFTextEncoder",
        "HFVisionEncoder",
        "HFAudioEncoder",
    }
    after = {k: v for k, v in p.model_.state_dict().items() if k in before}
    changed = any(not torch.equal(before[k], after[k]) for k in before)
    assert changed == (finetune == "full")
    # frozen inputs are encoded once per distinct content: 2 images, 2 tones, 4 texts
    expected_cache = (
        {}
        if finetune == "full"
        else {
            "image": {"encoded": 2, "reused": 38},
            "audio": {"encoded": 2, "reused": 38},
            "text": {"encoded": 4, "reused": 36},
        }
    )
    assert p.fit_summary_["cache"] == expected_cache
    p.save(tmp_path / "m")
    again = FusionPredictor.load(tmp_path / "m")
    pd.testing.assert_frame_equal(
        again.predict_proba(av_text_table), p.predict_proba(av_text_table)
    )


def test_pretrained_preset_uses_the_real_bundled_weights(tmp_path: Path) -> None:
    demo = build_demo(tmp_path / "demo", n_rows=60, seed=0)
    config = {
        "train": {"epochs": 2, "cache_dir": str(tmp_path / "cache")},
        "data": {"audio": {"sample_rate": 8000, "n_fft": 512, "hop_length": 80}},
    }
    p = FusionPredictor("label", preset="pretrained", config=config, progress=False)
    p.fit(demo.train, demo.valid, seed=0)
    kinds = {n: type(e).__name__ for n, e in p.model_.encoders.items()}
    assert kinds == {
        "text": "HFTextEncoder",
        "image": "EfficientNetLiteEncoder",
        "audio": "SpectrogramCNNEncoder",
        "tabular": "TabularMLPEncoder",
    }
    assert p.model_.encoders["image"].out_dim == 1280 and p.model_.encoders["text"].out_dim == 384
    assert set(p.fit_summary_["cache"]) == {"text", "image", "audio"}
    assert p.config_.model.encoders["image"].finetune == "frozen"
    assert p.preprocessor_.columns["image"].config.size == 224
