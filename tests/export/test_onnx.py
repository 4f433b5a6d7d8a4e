"""ONNX export: agreement with PyTorch (missing modalities, batch 1 and 17), OnnxPredictor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from crossfuse.api import FusionPredictor
from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.table import read_table
from crossfuse.errors import ConfigError, ModelDirError
from crossfuse.export import ExportConfig, OnnxPredictor, export_model
from crossfuse.export.flat import TensorSpec
from crossfuse.export.onnx_predictor import OnnxSession
from tests.conftest import TINY_CONFIG, write_png, write_wav

EXPORT_CONFIG: dict[str, Any] = {
    **TINY_CONFIG,
    "data": {
        **TINY_CONFIG["data"],
        "audio": {
            "sample_rate": 8000,
            "duration": 0.25,
            "n_fft": 256,
            "hop_length": 128,
            "n_mels": 16,
        },
    },
    "model": {
        **TINY_CONFIG["model"],
        "encoders": {
            **TINY_CONFIG["model"]["encoders"],
            "audio": {"dim": 16, "options": {"channels": [4], "hidden": 8}},
        },
    },
    "train": {**TINY_CONFIG["train"], "epochs": 2},
}
MODALITIES = {
    "note": "text",
    "picture": "image",
    "sound": "audio",
    "x": "numeric",
    "colour": "categorical",
    "score": "numeric",
}


def make_table(folder: Path, n: int = 40) -> Path:
    """Every modality carries the class; some rows lack text, image, audio or numbers.

    Row 5 lacks every input. ``score`` is a regression target (ignored unless asked for).
    """
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        cls = i % 2
        rows.append(
            {
                "note": f"{['alpha', 'beta'][cls]} item {'word ' * (i % 4)}{i % 5}",
                "picture": write_png(folder / f"img{i}.png", 190 if cls else 60, size=8),
                "sound": write_wav(folder / f"snd{i}.wav", 900.0 if cls else 300.0),
                "x": round(float(rng.normal(1.0 if cls else -1.0, 0.5)), 3),
                "colour": ["red", "green", "blue"][(i + cls) % 3],
                "label": ["a", "b"][cls],
                "score": round(float(rng.normal(3.0 * cls, 1.0)), 3),
            }
        )
    df = pd.DataFrame(rows)
    df.loc[df.index % 7 == 3, "note"] = ""
    df.loc[df.index % 5 == 2, "picture"] = ""
    df.loc[df.index % 6 == 4, "sound"] = "missing.wav"  # unreadable → absent
    df.loc[df.index % 4 == 1, "x"] = np.nan
    df.loc[5, ["note", "picture", "sound", "x", "colour"]] = ["", "", "", np.nan, ""]
    path = folder / "table.csv"
    df.to_csv(path, index=False)
    return path


def train(
    folder: Path,
    table: Path,
    fusion: str = "concat",
    options: dict[str, Any] | None = None,
    *,
    label: str | list[str] = "label",
    modalities: dict[str, str] | None = None,
) -> Path:
    """Train a tiny model over ``table`` and save it to ``folder``."""
    config = {**EXPORT_CONFIG, "model": {**EXPORT_CONFIG["model"], "fusion_options": options or {}}}
    mods = dict(modalities or MODALITIES)
    if label == "label":
        mods["score"] = "ignore"
    predictor = FusionPredictor(
        label, fusion=fusion, config=config, modalities=mods, progress=False, device="cpu"
    )
    return predictor.fit(table, seed=0).save(folder)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(tmp_path_factory.mktemp("export_data"))


@pytest.fixture(scope="module")
def concat_export(table: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model directory, ONNX export directory checked on synthetic rows)."""
    folder = tmp_path_factory.mktemp("concat")
    model = train(folder / "model", table)
    export_model(model, folder / "export", ExportConfig(threads=1))
    return model, folder / "export"


def onnx_proba(export: Path, table: Path, rows: list[int]) -> np.ndarray:
    """Run the ONNX file directly on one collated batch of ``rows``."""
    manifest = json.loads((export / "export.json").read_text())
    onnx = OnnxPredictor.load(export, threads=1)
    dataset = FusionDataset(read_table(table), onnx.preprocessor_, labels=False)
    batch = Collator(onnx.preprocessor_)([dataset[i] for i in rows])["inputs"]
    specs = [TensorSpec.from_dict(d) for d in manifest["inputs"]]
    return OnnxSession(export / "model.onnx", specs, threads=1).run(batch)["label.proba"]


FUSIONS = {
    "concat": ("concat", None),
    "late": ("late", None),
    "weighted": ("weighted", None),
    "gated": ("gated", None),
    "attention": ("attention", None),
    "attention-tokens": ("attention", {"use_tokens": True, "cross_modal": True}),
}


@pytest.mark.parametrize("name", list(FUSIONS))
def test_onnx_probabilities_match_pytorch(name: str, table: Path, tmp_path: Path) -> None:
    fusion, options = FUSIONS[name]
    model = train(tmp_path / "model", table, fusion, options)
    result = export_model(model, tmp_path / "export", ExportConfig(threads=1), data=table)
    assert result.manifest["check"]["passed"] and result.max_abs_diff <= 1e-4
    assert result.manifest["check"]["source"] == "data"
    assert result.manifest["check"]["batch_sizes"][0] == 1

    torch_model = FusionPredictor.load(model, device="cpu")
    expected = torch_model.predict_proba(table)
    got = OnnxPredictor.load(tmp_path / "export", threads=1).predict_proba(table)
    assert list(got.columns) == ["a", "b"]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-4, rtol=0)
    # the same file runs a single row (every input absent) and a batch of 17
    for rows in ([5], list(range(17))):
        np.testing.assert_allclose(
            onnx_proba(tmp_path / "export", table, rows),
            expected.to_numpy()[rows],
            atol=1e-4,
            rtol=0,
        )


def test_the_table_really_has_missing_modalities(table: Path, concat_export) -> None:
    pre = OnnxPredictor.load(concat_export[1], threads=1).preprocessor_
    dataset = FusionDataset(read_table(table), pre, labels=False)
    inputs = Collator(pre)([dataset[i] for i in range(len(dataset))])["inputs"]
    absent = {name: int((~batch["present"]).sum()) for name, batch in inputs.items()}
    assert all(count >= 5 for name, count in absent.items() if name != "tabular"), absent
    assert not any(batch["present"][5] for batch in inputs.values())


def test_onnx_predictor_predict_equals_fusion_predictor(concat_export, table: Path) -> None:
    model, export = concat_export
    onnx = OnnxPredictor.load(export, threads=1)
    torch_model = FusionPredictor.load(model, device="cpu")
    pd.testing.assert_series_equal(onnx.predict(table), torch_model.predict(table))
    assert onnx.class_labels == ["a", "b"] and onnx.labels == ["label"]
    frame = (
        pd.read_csv(table)
        .head(3)
        .assign(
            picture=lambda d: [
                str(table.parent / p) if isinstance(p, str) else p for p in d["picture"]
            ]
        )
    )
    frame["sound"] = [str(table.parent / p) if isinstance(p, str) else p for p in frame["sound"]]
    pd.testing.assert_series_equal(onnx.predict(frame), torch_model.predict(frame))


def test_manifest_describes_inputs_outputs_and_check(concat_export) -> None:
    model, export = concat_export
    manifest = json.loads((export / "export.json").read_text())
    assert manifest["format"] == "onnx" and manifest["file"] == "model.onnx"
    assert manifest["opset"] == 17 and manifest["exporter"] == "torchscript"
    assert manifest["check"]["source"] == "synthetic" and manifest["check"]["passed"]
    assert manifest["check"]["max_abs_diff"] <= 1e-4
    assert set(manifest["check"]["batch_sizes"]) >= {1, 64}
    assert manifest["classes"] == {"label": ["a", "b"]}
    assert manifest["outputs"] == [
        {
            "name": "label.proba",
            "task": "label",
            "kind": "classification",
            "shape": ["batch", 2],
            "classes": ["a", "b"],
        }
    ]
    inputs = {d["name"]: d for d in manifest["inputs"]}
    assert inputs["picture.pixels"]["dtype"] == "float32"
    assert inputs["picture.pixels"]["shape"] == ["batch", 1, 8, 8]
    assert inputs["note.ids"]["shape"] == ["batch", "note.tokens"]
    assert inputs["sound.mel"]["shape"] == ["batch", 16, 16]
    for name in ("note", "picture", "sound", "tabular"):  # presence masks are real inputs
        assert inputs[f"{name}.present"] == {
            "name": f"{name}.present",
            "input": name,
            "key": "present",
            "dtype": "bool",
            "shape": ["batch"],
        }
    assert manifest["encoders"]["sound"] == "audio-cnn-gru"
    assert json.loads((export / "crossfuse.json").read_text()) == json.loads(
        (model / "crossfuse.json").read_text()
    )
    session = OnnxPredictor.load(export, threads=1).session.session
    assert {i.name: i.shape[0] for i in session.get_inputs()} == dict.fromkeys(inputs, "batch")


def test_multitask_with_regression(table: Path, tmp_path: Path) -> None:
    model = train(tmp_path / "model", table, label=["label", "score"])
    result = export_model(model, tmp_path / "export", ExportConfig(threads=1), data=table)
    outputs = {o["name"]: o for o in result.manifest["outputs"]}
    assert outputs["score.value"]["shape"] == ["batch"] and "std" in outputs["score.value"]
    onnx = OnnxPredictor.load(tmp_path / "export", threads=1)
    torch_model = FusionPredictor.load(model, device="cpu")
    got, expected = onnx.predict(table), torch_model.predict(table)
    assert list(got.columns) == ["label", "score"]
    assert (got["label"] == expected["label"]).all()
    np.testing.assert_allclose(
        got["score"], expected["score"], atol=1e-4 * outputs["score.value"]["std"]
    )
    proba = onnx.predict_proba(table)
    assert set(proba) == {"label"}
    np.testing.assert_allclose(proba["label"], torch_model.predict_proba(table)["label"], atol=1e-4)


def test_disagreement_is_refused(concat_export, tmp_path: Path, monkeypatch) -> None:
    from crossfuse.export import onnx_export, writers

    def off_by_a_bit(path, inputs, threads):
        run = writers.OnnxSession(path, inputs, threads).run
        return lambda batch: {k: v + 1e-3 for k, v in run(batch).items()}

    monkeypatch.setattr(onnx_export.writers, "onnx_runner", off_by_a_bit)
    with pytest.raises(ConfigError, match=r"disagrees with PyTorch: max abs difference 0.001"):
        export_model(concat_export[0], tmp_path / "out", ExportConfig(threads=1))
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_an_encoder_the_exporter_rejects_is_named(concat_export, tmp_path, monkeypatch) -> None:
    from crossfuse.encoders.tabular import TabularMLPEncoder

    original = TabularMLPEncoder.forward

    def untraceable(self, inputs):
        if torch.jit.is_tracing():
            raise RuntimeError("unsupported operation")
        return original(self, inputs)

    monkeypatch.setattr(TabularMLPEncoder, "forward", untraceable)
    with pytest.raises(ConfigError, match=r"input 'tabular' \(encoder 'tabular-mlp'\)") as err:
        export_model(concat_export[0], tmp_path / "out", ExportConfig(threads=1))
    assert "note" not in str(err.value) and "unsupported operation" in str(err.value)


def test_bad_options_and_directories(concat_export, tmp_path: Path) -> None:
    model, export = concat_export
    with pytest.raises(
        ConfigError, match="unknown export format 'tflite'; choose one of: onnx, torchscript"
    ):
        ExportConfig(format="tflite")
    with pytest.raises(ConfigError, match="unknown ONNX exporter 'fast'"):
        ExportConfig(exporter="fast")
    with pytest.raises(ConfigError, match="opset 30 is not supported"):
        ExportConfig(opset=30)
    with pytest.raises(ConfigError, match="tolerance"):
        ExportConfig(tolerance=0)
    with pytest.raises(ConfigError, match="is a model directory"):
        export_model(model, model)
    with pytest.raises(ModelDirError, match="not a crossfuse export directory"):
        OnnxPredictor.load(model)
    with pytest.raises(ModelDirError, match="not found"):
        OnnxPredictor.load(tmp_path / "nowhere")


def test_dynamo_exporter(table: Path, tmp_path: Path) -> None:
    """torch.export-based ONNX works without text-gru, and names text-gru when it cannot."""
    no_text = {**MODALITIES, "note": "ignore", "sound": "ignore"}
    model = train(tmp_path / "m1", table, "gated", modalities=no_text)
    config = ExportConfig(exporter="dynamo", threads=1)
    result = export_model(model, tmp_path / "e1", config, data=table)
    assert result.manifest["exporter"] == "dynamo" and result.manifest["opset"] == 18
    expected = FusionPredictor.load(model, device="cpu").predict_proba(table)
    got = OnnxPredictor.load(tmp_path / "e1", threads=1).predict_proba(table)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-4, rtol=0)

    text_only = {**no_text, "note": "text", "x": "ignore", "colour": "ignore"}
    model = train(tmp_path / "m2", table, "concat", modalities=text_only)
    with pytest.raises(ConfigError, match=r"input 'note' \(encoder 'text-gru': torch.export"):
        export_model(model, tmp_path / "e2", config)
