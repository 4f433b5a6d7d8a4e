"""`feedback list/export`, `refine` and `rollback` through typer, on a tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from crossfuse.api import FusionPredictor
from crossfuse.cli.feedback_cmds import feedback_app, refine, rollback
from crossfuse.errors import ConfigError, ModelDirError
from crossfuse.feedback import FeedbackStore
from tests.conftest import TINY_CONFIG

runner = CliRunner()


def _app() -> typer.Typer:
    """The commands as the main app registers them."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.add_typer(feedback_app, name="feedback")
    app.command()(refine)
    app.command()(rollback)
    return app


def invoke(*args: str):
    return runner.invoke(_app(), list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def base_model(toy_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weak tiny model with 12 feedback rows (images sent as bytes) in its default store."""
    config = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}}
    out = tmp_path_factory.mktemp("clifb") / "model"
    FusionPredictor("label", config=config, modalities={"score": "ignore"}, progress=False).fit(
        toy_table, seed=0
    ).save(out)
    store = FeedbackStore.for_model(out)
    for i, row in pd.read_csv(toy_table).head(12).iterrows():
        inputs = {
            "note": row["note"],
            "picture": (toy_table.parent / row["picture"]).read_bytes(),
            "x": row["x"],
        }
        store.record_prediction(f"req{i}", inputs, {"label": "a"}, "1")
        store.add_feedback(request_id=f"req{i}", label=row["label"], comment=f"note {i}")
    return out


@pytest.fixture
def model(base_model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_model, tmp_path / "model"))


def test_list_shows_the_newest_rows(model: Path) -> None:
    result = invoke("feedback", "list", str(model), "--limit", "3")
    assert result.exit_code == 0, result.output
    assert "3 of 12" in result.output
    assert "note 11" in result.output and "note 9" in result.output
    assert "note 8" not in result.output
    assert ".png" in result.output  # media shown by file name


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_export_writes_a_trainable_table(model: Path, tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"fb{suffix}"
    result = invoke("feedback", "export", str(model), "--out", str(target))
    assert result.exit_code == 0, result.output
    assert "12 feedback rows written" in result.output
    reader = {".csv": pd.read_csv, ".parquet": pd.read_parquet}.get(
        suffix, lambda p: pd.read_json(p, lines=True)
    )
    frame = reader(target)
    assert len(frame) == 12 and frame["comment"].iloc[0] == "note 0"
    assert {"note", "picture", "x", "label", "predicted"} <= set(frame.columns)
    assert all(Path(p).is_file() for p in frame["picture"])
    predicted = FusionPredictor.load(model).predict(frame)  # directly usable as a table
    assert len(predicted) == 12


def test_export_and_list_errors(model: Path, tmp_path: Path) -> None:
    result = invoke("feedback", "export", str(model), "--out", str(tmp_path / "fb.xlsx"))
    assert isinstance(result.exception, ConfigError) and "'.xlsx'" in str(result.exception)
    result = invoke("feedback", "list", str(model), "--db", str(tmp_path / "none.sqlite"))
    assert isinstance(result.exception, ConfigError) and "not found" in str(result.exception)
    assert not (tmp_path / "none.sqlite").exists()


def test_refine_then_rollback(model: Path, toy_table: Path, tmp_path: Path) -> None:
    result = invoke(
        "refine",
        str(model),
        "--data",
        str(toy_table),
        "--epochs",
        "3",
        "--out",
        str(tmp_path / "v"),
    )
    assert result.exit_code == 0, result.output
    assert "trained on 12 feedback + 128 replay rows" in result.output
    assert "holdout accuracy" in result.output and "candidate 2" in result.output
    assert "promoted version 2" in result.output and "live version: 2" in result.output
    assert (tmp_path / "v" / "crossfuse.json").is_file()
    result = invoke("rollback", str(model))
    assert result.exit_code == 0, result.output
    assert "live version 2 → 1" in result.output
    assert FusionPredictor.load(model).version_ == "1"
    result = invoke("rollback", str(model))
    assert isinstance(result.exception, ModelDirError)
    assert "nothing earlier" in str(result.exception)


def test_refine_needs_a_held_out_set(model: Path) -> None:
    result = invoke("refine", str(model))
    assert isinstance(result.exception, ConfigError)
    assert "--data" in str(result.exception) and "--holdout" in str(result.exception)
