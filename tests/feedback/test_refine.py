"""refine_model: promote a model that learned from feedback, refuse one that got worse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from crossfuse import versions
from crossfuse.api import FusionPredictor
from crossfuse.errors import ConfigError, ModelDirError
from crossfuse.feedback import FeedbackStore, refine_model
from crossfuse.feedback.refine import _judge
from tests.conftest import TINY_CONFIG

WEAK = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}}


def _train(table: Path, config: dict, out: Path) -> Path:
    predictor = FusionPredictor(
        "label", config=config, modalities={"score": "ignore"}, progress=False
    )
    return predictor.fit(table, seed=0).save(out)


@pytest.fixture(scope="module")
def trained(toy_table: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A weak model (1 epoch, chance accuracy) and a strong one (6 epochs)."""
    folder = tmp_path_factory.mktemp("refine")
    return {
        "weak": _train(toy_table, WEAK, folder / "weak"),
        "strong": _train(toy_table, TINY_CONFIG, folder / "strong"),
    }


def _copy(trained: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained[name], tmp_path / name))


def _feedback(toy_table: Path, model: Path, rows: int = 40, flip: bool = False) -> FeedbackStore:
    """Served requests (image bytes, as the server records them) with corrected labels."""
    df = pd.read_csv(toy_table).head(rows)
    store = FeedbackStore.for_model(model)
    for i, row in df.iterrows():
        picture = (toy_table.parent / row["picture"]).read_bytes()
        store.record_prediction(
            f"r{i}", {"note": row["note"], "picture": picture, "x": row["x"]}, {"label": "a"}, "1"
        )
        label = {"a": "b", "b": "a"}[row["label"]] if flip else row["label"]
        store.add_feedback(request_id=f"r{i}", label=label)
    return store


def test_refine_promotes_a_better_model(trained, toy_table: Path, tmp_path: Path) -> None:
    model = _copy(trained, "weak", tmp_path)
    store = _feedback(toy_table, model)
    result = refine_model(model, store, data=toy_table, epochs=3, seed=0)
    old = result.metrics["old"]["holdout"]["tasks"]["label"]["accuracy"]
    new = result.metrics["new"]["holdout"]["tasks"]["label"]["accuracy"]
    assert new >= old - 0.01 and new > 0.8
    assert result.promoted and (result.version, result.parent, result.current) == (2, 1, 2)
    assert result.reason.startswith("promoted") and f"{new:.4f}" in result.reason
    # 20% of the 160 rows held out (32); all 128 others replayed (default wants 256)
    assert (result.feedback_rows, result.replay_rows, result.holdout_rows) == (40, 128, 32)
    assert (model / "versions" / "1" / "model.safetensors").is_file()
    assert (model / "versions" / "2" / "model.safetensors").is_file()
    assert (model / "current").read_text().strip() == "2"
    loaded = FusionPredictor.load(model)
    assert loaded.version_ == "2"
    direct = FusionPredictor.load(model / "versions" / "2")
    pd.testing.assert_frame_equal(loaded.predict_proba(toy_table), direct.predict_proba(toy_table))
    entries = {e["version"]: e for e in versions.history(model)}
    assert entries[2]["promoted"] and entries[2]["parent"] == 1
    assert entries[2]["metrics"]["new"]["holdout"]["tasks"]["label"]["accuracy"] == new
    assert entries[2]["refine"]["lr"] == pytest.approx(TINY_CONFIG["train"]["lr"] * 0.3)
    meta = json.loads((model / "versions" / "2" / "crossfuse.json").read_text())
    assert meta["fit_summary"]["refined_from"] == 1 and meta["fit_summary"]["feedback_rows"] == 40


def test_refine_refuses_a_worse_model(trained, toy_table: Path, tmp_path: Path) -> None:
    model = _copy(trained, "strong", tmp_path)
    store = _feedback(toy_table, model, rows=60, flip=True)
    result = refine_model(model, store, data=toy_table, epochs=8, lr=2e-2, replay=0, seed=0)
    old = result.metrics["old"]["holdout"]["tasks"]["label"]["accuracy"]
    new = result.metrics["new"]["holdout"]["tasks"]["label"]["accuracy"]
    assert new < old - 0.01
    assert not result.promoted and result.current == 1
    assert result.reason.startswith("not promoted")
    assert f"{old:.4f}" in result.reason and f"{new:.4f}" in result.reason
    assert (model / "current").read_text().strip() == "1"
    assert (model / "versions" / "2" / "model.safetensors").is_file()  # kept for inspection
    entry = versions.history(model)[-1]
    assert entry["version"] == 2 and entry["promoted"] is False and entry["reason"] == result.reason
    assert FusionPredictor.load(model).version_ == "1"


def test_rollback_restores_the_previous_version(trained, toy_table: Path, tmp_path: Path) -> None:
    model = _copy(trained, "weak", tmp_path)
    original = FusionPredictor.load(model).predict_proba(toy_table)
    refine_model(model, _feedback(toy_table, model), data=toy_table, epochs=2, out=tmp_path / "new")
    copied = (tmp_path / "new" / "model.safetensors").read_bytes()
    assert copied == (model / "versions" / "2" / "model.safetensors").read_bytes()
    assert versions.rollback(model) == 1
    loaded = FusionPredictor.load(model)
    assert loaded.version_ == "1"
    pd.testing.assert_frame_equal(loaded.predict_proba(toy_table), original)
    with pytest.raises(ModelDirError, match="cannot roll back"):
        versions.rollback(model)


def test_holdout_only_trains_on_the_feedback_alone(
    trained, toy_table: Path, tmp_path: Path
) -> None:
    model = _copy(trained, "weak", tmp_path)
    holdout = pd.read_csv(toy_table).tail(40)
    holdout["picture"] = [str(toy_table.parent / p) for p in holdout["picture"]]
    frame = pd.read_csv(toy_table).head(30)  # a feedback table instead of a store
    frame["picture"] = [str(toy_table.parent / p) for p in frame["picture"]]
    result = refine_model(model, frame, holdout=holdout, epochs=1)
    assert (result.feedback_rows, result.replay_rows, result.holdout_rows) == (30, 0, 40)
    assert result.metrics["new"]["feedback"]["rows"] == 30


def test_replay_size_can_be_set(trained, toy_table: Path, tmp_path: Path) -> None:
    model = _copy(trained, "weak", tmp_path)
    result = refine_model(
        model, _feedback(toy_table, model, rows=10), data=toy_table, replay=50, epochs=1
    )
    assert result.replay_rows == 50 and result.holdout_rows == 32


def test_labels_the_heads_cannot_learn_are_refused(
    trained, toy_table: Path, tmp_path: Path
) -> None:
    model = _copy(trained, "weak", tmp_path)
    store = FeedbackStore.for_model(model)
    store.add_feedback(label="c", inputs={"note": "alpha", "x": 1.0})
    store.add_feedback(label="zebra", inputs={"note": "beta", "x": 0.0})
    store.add_feedback(label="a", inputs={"note": "beta", "x": 0.0})
    with pytest.raises(ConfigError, match=r"\['c', 'zebra'\] are not among the model's classes"):
        refine_model(model, store, data=toy_table)
    assert not (model / "versions").exists() and not (model / "current").exists()


def test_unlabelled_feedback_rows_are_refused(trained, toy_table: Path, tmp_path: Path) -> None:
    model = _copy(trained, "weak", tmp_path)
    frame = pd.DataFrame({"note": ["alpha", "beta"], "x": [1.0, 0.0], "label": ["a", None]})
    with pytest.raises(ConfigError, match="1 feedback row.*no label.*row 1"):
        refine_model(model, frame, data=toy_table)


def test_a_held_out_set_is_required(trained, tmp_path: Path) -> None:
    model = _copy(trained, "weak", tmp_path)
    with pytest.raises(ConfigError, match="--data.*--holdout"):
        refine_model(model, pd.DataFrame({"label": ["a"]}))


def test_empty_feedback_is_refused(trained, toy_table: Path, tmp_path: Path) -> None:
    model = _copy(trained, "weak", tmp_path)
    with pytest.raises(ConfigError, match="no feedback"):
        refine_model(model, FeedbackStore.for_model(model), data=toy_table)


@pytest.mark.parametrize(
    ("name", "mode", "old", "new", "promote"),
    [
        ("accuracy", "max", 0.90, 0.895, True),  # within tolerance
        ("accuracy", "max", 0.90, 0.85, False),
        ("rmse", "min", 1.00, 0.50, True),  # lower rmse is better
        ("rmse", "min", 1.00, 1.20, False),
    ],
)
def test_judge_respects_the_metric_direction(name, mode, old, new, promote) -> None:
    ok, reason = _judge(name, mode, old, new, 0.01, 1, 2)
    assert ok is promote
    assert f"{old:.4f}" in reason and f"{new:.4f}" in reason and name in reason
