"""TorchScript export: a traced file that torch.jit.load runs like the PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from crossfuse.api import FusionPredictor
from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.table import read_table
from crossfuse.errors import ConfigError, ModelDirError
from crossfuse.export import ExportConfig, OnnxPredictor, export_model
from crossfuse.export.flat import TensorSpec, flatten
from tests.export.test_onnx import make_table, train


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(tmp_path_factory.mktemp("ts_data"))


def run_traced(export: Path, table: Path, rows: list[int]) -> np.ndarray:
    """Load the TorchScript file and run it on one collated batch of ``rows``."""
    manifest = json.loads((export / "export.json").read_text())
    specs = [TensorSpec.from_dict(d) for d in manifest["inputs"]]
    predictor = FusionPredictor.load(export.parent / "model", device="cpu")
    dataset = FusionDataset(read_table(table), predictor.preprocessor_, labels=False)
    batch = Collator(predictor.preprocessor_)([dataset[i] for i in rows])["inputs"]
    module = torch.jit.load(str(export / "model.torchscript.pt"))
    with torch.no_grad():
        (proba,) = module(*flatten(batch, specs))
    return proba.numpy()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("fusion", ["concat", "attention"])
def test_torchscript_round_trip(fusion: str, table: Path, tmp_path: Path) -> None:
    model = train(tmp_path / "model", table, fusion)
    config = ExportConfig(format="torchscript")
    result = export_model(model, tmp_path / "export", config, data=table)
    files = {p.name for p in (tmp_path / "export").iterdir()}
    assert files == {"model.torchscript.pt", "crossfuse.json", "export.json"}
    manifest = result.manifest
    assert manifest["format"] == "torchscript" and manifest["exporter"] == "torch.jit.trace"
    assert manifest["opset"] is None and manifest["unused_inputs"] == []
    assert manifest["check"]["passed"] and result.max_abs_diff <= 1e-4

    expected = FusionPredictor.load(model, device="cpu").predict_proba(table).to_numpy()
    n = len(expected)
    for rows in (list(range(n)), [5], [3, 4]):  # all rows, one row with nothing present, two
        np.testing.assert_allclose(
            run_traced(tmp_path / "export", table, rows), expected[rows], atol=1e-5, rtol=0
        )


def test_replacing_an_onnx_export_with_torchscript(table: Path, tmp_path: Path) -> None:
    model = train(tmp_path / "model", table, "late")
    export_model(model, tmp_path / "export", ExportConfig(threads=1))
    assert (tmp_path / "export" / "model.onnx").is_file()
    export_model(model, tmp_path / "export", ExportConfig(format="torchscript"))
    assert not (tmp_path / "export" / "model.onnx").exists()
    with pytest.raises(ModelDirError, match="holds a 'torchscript' export, not ONNX"):
        OnnxPredictor.load(tmp_path / "export")


def test_an_encoder_tracing_rejects_is_named(table: Path, tmp_path: Path, monkeypatch) -> None:
    from crossfuse.encoders.image import ImageCNNEncoder

    model = train(tmp_path / "model", table, "weighted")
    original = ImageCNNEncoder.forward

    def untraceable(self, inputs):
        if torch.jit.is_tracing():
            raise RuntimeError("cannot trace this")
        return original(self, inputs)

    monkeypatch.setattr(ImageCNNEncoder, "forward", untraceable)
    with pytest.raises(
        ConfigError,
        match=r"TorchScript export cannot handle input 'picture' \(encoder 'image-cnn'\)",
    ):
        export_model(model, tmp_path / "export", ExportConfig(format="torchscript"))
    assert not (tmp_path / "export").exists()


@pytest.fixture
def tiny_bert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A 2-layer, 32-wide local BERT whose vocabulary covers the table's words."""
    import huggingface_hub.constants
    from transformers import BertConfig, BertModel, BertTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "tiny_bert"
    folder.mkdir()
    words = ["alpha", "beta", "item", "word", *map(str, range(5))]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, "."]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_hf_text_encoder_exports(table: Path, tmp_path: Path, tiny_bert: str) -> None:
    """A pretrained Hugging Face text encoder, some rows without text, in both formats."""
    from tests.export.test_onnx import EXPORT_CONFIG, MODALITIES

    encoders = {**EXPORT_CONFIG["model"]["encoders"], "text": {"name": "hf-text"}}
    encoders["text"]["options"] = {"model": tiny_bert, "max_length": 16}
    config = {**EXPORT_CONFIG, "model": {**EXPORT_CONFIG["model"], "encoders": encoders}}
    mods = {**MODALITIES, "score": "ignore", "sound": "ignore"}
    predictor = FusionPredictor("label", config=config, modalities=mods, progress=False)
    model = predictor.fit(table, seed=0, epochs=1).save(tmp_path / "model")
    expected = predictor.predict_proba(table).to_numpy()

    result = export_model(model, tmp_path / "onnx", ExportConfig(threads=1), data=table)
    assert result.manifest["encoders"]["note"] == "hf-text"
    assert {"note.input_ids", "note.attention_mask", "note.present"} <= {
        d["name"] for d in result.manifest["inputs"]
    }
    got = OnnxPredictor.load(tmp_path / "onnx", threads=1).predict_proba(table).to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)

    export_model(model, tmp_path / "export", ExportConfig(format="torchscript"), data=table)
    np.testing.assert_allclose(
        run_traced(tmp_path / "export", table, [3, 5]), expected[[3, 5]], atol=1e-5, rtol=0
    )
