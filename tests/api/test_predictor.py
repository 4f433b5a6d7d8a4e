"""FusionPredictor end to end on a tiny learnable table."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfuse.api import FusionPredictor
from crossfuse.errors import CrossfuseError, ModelDirError
from tests.conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def trained(toy_table: Path) -> FusionPredictor:
    return FusionPredictor(
        "label", config=TINY_CONFIG, modalities={"score": "ignore"}, progress=False
    ).fit(toy_table, seed=0)


def test_learns_well_above_chance(trained: FusionPredictor, toy_table: Path) -> None:
    result = trained.evaluate(toy_table)
    assert result["tasks"]["label"]["accuracy"] > 0.85
    assert set(result["inputs_present"]) == {"note", "picture", "tabular"}
    assert trained.fit_summary_["epochs"] >= 1
    assert trained.metrics_["valid"]["tasks"]["label"]["accuracy"] > 0.7


def test_predict_and_proba_shapes(trained: FusionPredictor, toy_table: Path) -> None:
    proba = trained.predict_proba(toy_table)
    assert list(proba.columns) == ["a", "b"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    preds = trained.predict(toy_table)
    assert preds.name == "label" and set(preds) <= {"a", "b"}
    assert (preds == proba.idxmax(axis=1)).all()
    emb = trained.extract_embedding(toy_table)
    assert emb.shape == (160, 16)
    per_input = trained.extract_embedding(toy_table, fused=False)
    assert {k: v.shape for k, v in per_input.items()} == {
        "note": (160, 16),
        "picture": (160, 16),
        "tabular": (160, 16),
    }


def test_save_load_gives_identical_probabilities(trained, toy_table: Path, tmp_path: Path) -> None:
    trained.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"crossfuse.json", "model.safetensors", "metrics.json", "tensorboard"} <= files
    meta = json.loads((tmp_path / "m" / "crossfuse.json").read_text())
    assert meta["format_version"] == 1 and meta["classes"] == {"label": ["a", "b"]}
    assert len(meta["train_fingerprint"]) == 16
    loaded = FusionPredictor.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.predict_proba(toy_table), trained.predict_proba(toy_table))


def test_incompatible_model_dir_is_a_clear_error(trained, tmp_path: Path) -> None:
    trained.save(tmp_path / "m")
    meta_path = tmp_path / "m" / "crossfuse.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 999
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match="format version 999"):
        FusionPredictor.load(tmp_path / "m")
    with pytest.raises(ModelDirError, match="not a crossfuse model directory"):
        FusionPredictor.load(tmp_path)


def test_same_seed_same_metrics(toy_table: Path) -> None:
    def run(seed: int) -> dict:
        p = FusionPredictor(
            "label",
            fusion="weighted",
            config=TINY_CONFIG,
            progress=False,
            modalities={"score": "ignore"},
        )
        return p.fit(toy_table, epochs=2, seed=seed).metrics_["valid"]["tasks"]["label"]

    a, b = run(0), run(0)
    assert a == b


def test_multitask_trains_two_heads(toy_table: Path) -> None:
    p = FusionPredictor(["label", "score"], config=TINY_CONFIG, progress=False).fit(toy_table)
    assert set(p.model_.heads) == {"label", "score"}
    result = p.evaluate(toy_table)["tasks"]
    assert result["label"]["accuracy"] > 0.8
    assert result["score"]["r2"] > 0.5
    preds = p.predict(toy_table)
    assert list(preds.columns) == ["label", "score"]
    assert preds["score"].dtype == float


def test_unfitted_predictor_says_so(toy_table: Path) -> None:
    with pytest.raises(CrossfuseError, match="not trained"):
        FusionPredictor("label").predict(toy_table)


def test_time_limit_and_modality_dropout(toy_table: Path) -> None:
    config = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "modality_dropout": 0.3}}
    p = FusionPredictor("label", config=config, progress=False, modalities={"score": "ignore"})
    p.fit(toy_table, epochs=500, time_limit=1.0)
    assert p.fit_summary_["epochs"] < 500
    assert p.fit_summary_["train_seconds"] < 30
    assert p.config_.train.modality_dropout == 0.3


def test_regression_only(toy_table: Path) -> None:
    p = FusionPredictor("score", config=TINY_CONFIG, progress=False).fit(toy_table, epochs=8)
    assert p.schema_.tasks["score"] == "regression"
    metrics = p.evaluate(toy_table)["tasks"]["score"]
    assert {"mse", "rmse", "mae", "r2", "pearson"} <= set(metrics)
    assert metrics["pearson"] > 0.7
    with pytest.raises(CrossfuseError, match="classification"):
        p.predict_proba(toy_table)


def test_frozen_encoder_features_are_cached_once(toy_table: Path, tmp_path: Path) -> None:
    config = {
        **TINY_CONFIG,
        "model": {
            **TINY_CONFIG["model"],
            "encoders": {
                **TINY_CONFIG["model"]["encoders"],
                "image": {"dim": 16, "finetune": "frozen", "options": {"widths": [8]}},
            },
        },
        "train": {**TINY_CONFIG["train"], "cache_dir": str(tmp_path / "cache")},
    }

    def fit() -> FusionPredictor:
        return FusionPredictor(
            "label", config=config, progress=False, modalities={"score": "ignore"}
        ).fit(toy_table, epochs=2, seed=0)

    first = fit()
    assert first.fit_summary_["cache"] == {"picture": {"encoded": 160, "reused": 0}}
    assert len(first.fit_summary_["epoch_seconds"]) == 2
    second = fit()  # same seed → same frozen weights → every row found in the cache
    assert second.fit_summary_["cache"] == {"picture": {"encoded": 0, "reused": 160}}
    # both runs trained on the same cached features, so they predict the same
    pd.testing.assert_frame_equal(second.predict_proba(toy_table), first.predict_proba(toy_table))
    assert (tmp_path / "cache" / "cache.sqlite").is_file()
