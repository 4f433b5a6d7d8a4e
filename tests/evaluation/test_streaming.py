"""Streamed evaluation (row chunks) gives exactly the whole-table metrics, lazily."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import crossfuse.evaluation.streaming as streaming
from crossfuse.api import FusionPredictor
from crossfuse.data.stream import iter_table
from crossfuse.data.table import Table, read_table
from crossfuse.errors import CellError, ConfigError, TableError
from crossfuse.evaluation.evaluate import evaluate_model
from crossfuse.evaluation.streaming import evaluate_stream
from tests.conftest import TINY_CONFIG, make_toy_table

CHUNKS = (1, 7, 1000)  # one row, a size that does not divide the table, more than the table
LABELS = {"classification": "label", "regression": "score", "multitask": ["label", "score"]}


def assert_close(a: Any, b: Any, where: str = "") -> None:
    """Same structure (keys in the same order), floats within 1e-6, everything else equal."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_close(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=1e-6), where
    else:
        assert a == b, where


def chunk_sizes_seen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on streamed inference: the list fills with the row count of every chunk run."""
    seen: list[int] = []
    real = streaming.run_inference

    def spy(model: Any, pre: Any, table: Table, **kw: Any) -> Any:
        seen.append(len(table))
        return real(model, pre, table, **kw)

    monkeypatch.setattr(streaming, "run_inference", spy)
    return seen


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The toy table with empty cells, missing files and unlabelled rows, in three formats."""
    folder = tmp_path_factory.mktemp("stream")
    csv = make_toy_table(folder, n=40)
    df = pd.read_csv(csv)
    df.loc[[3, 17], "note"] = None
    df.loc[[5, 22], "picture"] = ["gone5.png", "gone22.png"]  # files that do not exist
    df.loc[9, "label"] = None
    df.loc[30, "score"] = None
    df.to_csv(csv, index=False)
    df.to_json(folder / "toy.jsonl", orient="records", lines=True)
    df.to_parquet(folder / "toy.parquet")
    return {"csv": csv, "jsonl": folder / "toy.jsonl", "parquet": folder / "toy.parquet"}


@pytest.fixture(scope="module")
def predictors(tables: dict[str, Path]) -> dict[str, FusionPredictor]:
    config = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}}
    out = {}
    for kind, label in LABELS.items():
        ignore = {"score": "ignore"} if kind == "classification" else None
        p = FusionPredictor(label, config=config, modalities=ignore, progress=False)
        out[kind] = p.fit(tables["csv"], seed=0)
    return out


@pytest.mark.parametrize("kind", list(LABELS))
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_streamed_metrics_equal_whole_table(
    predictors: dict[str, FusionPredictor], tables: dict[str, Path], kind: str, fmt: str
) -> None:
    predictor, path = predictors[kind], tables[fmt]
    whole = predictor.evaluate(path, ablate=True)
    assert whole["rows"] == 40 and set(whole["ablation"]["only"]) == {"note", "picture", "tabular"}
    assert whole["problems"]["missing"]["note"] == 2
    assert whole["problems"]["unusable"]["picture"] == 2
    for chunk_rows in CHUNKS:
        streamed = predictor.evaluate(path, ablate=True, chunk_rows=chunk_rows)
        assert_close(streamed, whole, f"chunk_rows={chunk_rows}")
        json.dumps(streamed)  # still plain JSON


def test_problems_name_rows_of_the_whole_table(
    predictors: dict[str, FusionPredictor], tables: dict[str, Path]
) -> None:
    result = predictors["classification"].evaluate(tables["csv"], chunk_rows=7)
    examples = result["problems"]["examples"]
    assert [e.split(",")[0] for e in examples] == ["row 5", "row 9", "row 22"]
    assert "gone22.png" in examples[2]


def test_strict_error_names_the_table_row(
    predictors: dict[str, FusionPredictor], tables: dict[str, Path]
) -> None:
    predictor = predictors["classification"]
    table = read_table(tables["csv"])
    df = table.df.copy()
    df["note"] = df["note"].fillna("alpha")
    df.loc[5, "picture"] = "toy5.png"
    clean = Table(df, table.base_dir, table.name)  # only row 22 (a missing file) is bad
    model, pre = predictor.model_, predictor.preprocessor_
    with pytest.raises(CellError, match=r"row 22, column 'picture'"):
        evaluate_stream(model, pre, iter_table(clean, chunk_rows=7), strict=True)


def test_chunks_handed_to_inference_never_exceed_chunk_rows(
    predictors: dict[str, FusionPredictor],
    tables: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = chunk_sizes_seen(monkeypatch)
    monkeypatch.setattr("crossfuse.api.read_table", None)  # the whole table is never read
    monkeypatch.setattr("crossfuse.data.stream.read_table", None)
    predictors["multitask"].evaluate(tables["parquet"], ablate=True, chunk_rows=7)
    variants = 1 + 2 * 3  # the full model, then each of 3 inputs removed and alone
    assert seen == [n for n in (7, 7, 7, 7, 7, 5) for _ in range(variants)]


def test_evaluate_model_is_a_single_chunk_stream(
    predictors: dict[str, FusionPredictor], tables: dict[str, Path]
) -> None:
    predictor = predictors["regression"]
    model, pre = predictor.model_, predictor.preprocessor_
    table = read_table(tables["jsonl"])
    whole = evaluate_model(model, pre, table, ablate=True)
    assert whole == evaluate_stream(model, pre, [table], ablate=True)
    assert list(whole) == ["rows", "tasks", "inputs_present", "problems", "ablation"]
    assert whole["inputs_present"]["picture"] == pytest.approx(38 / 40)
    assert whole["tasks"]["score"]["n"] == 39  # row 30 has no score


def test_robustness_with_chunk_rows_is_refused(
    predictors: dict[str, FusionPredictor], tables: dict[str, Path]
) -> None:
    with pytest.raises(ConfigError, match="robustness curves need the whole table"):
        predictors["classification"].evaluate(tables["csv"], robustness=True, chunk_rows=10)


def test_bad_chunk_rows_and_empty_input(
    predictors: dict[str, FusionPredictor], tables: dict[str, Path]
) -> None:
    predictor = predictors["classification"]
    with pytest.raises(ConfigError, match="chunk_rows must be a positive integer, got 0"):
        predictor.evaluate(tables["csv"], chunk_rows=0)
    with pytest.raises(TableError, match="no rows"):
        evaluate_stream(predictor.model_, predictor.preprocessor_, [])
