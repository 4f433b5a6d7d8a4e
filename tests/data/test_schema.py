from pathlib import Path

import pandas as pd
import pytest

from crossfuse.data.schema import Modality, Schema, Task, infer_schema, infer_task
from crossfuse.data.table import read_table
from crossfuse.errors import SchemaError


def test_infers_every_modality(media_table: Path) -> None:
    table = read_table(media_table)
    schema = infer_schema(table.df, "label", base_dir=table.base_dir)
    assert schema.columns == {
        "id": Modality.IGNORE,
        "caption": Modality.TEXT,
        "image": Modality.IMAGE,
        "sound": Modality.AUDIO,
        "weight": Modality.NUMERIC,
        "colour": Modality.CATEGORICAL,
    }
    assert schema.tasks == {"label": Task.CLASSIFICATION}
    assert all(schema.reasons[c] for c in schema.columns)


def test_media_without_extension_is_sniffed(tmp_path: Path, media_table: Path) -> None:
    df = pd.read_csv(media_table)
    for i, name in enumerate(df["image"]):
        (tmp_path / f"blob{i}").write_bytes((tmp_path / name).read_bytes())
    df["image"] = [f"blob{i}" for i in range(len(df))]
    schema = infer_schema(df, "label", base_dir=tmp_path)
    assert schema.columns["image"] == Modality.IMAGE
    assert "content" in schema.reasons["image"]


def test_mostly_numeric_strings_are_numeric() -> None:
    df = pd.DataFrame(
        {"x": ["1", "2.5", "3", "4", "5", "6", "7", "8", "9", "oops"], "y": [0, 1] * 5}
    )
    assert infer_schema(df, "y").columns["x"] == Modality.NUMERIC


def test_overrides_win_and_are_checked() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0], "z": ["a", "b", "c"]})
    schema = infer_schema(df, "y", overrides={"x": "categorical"})
    assert schema.columns["x"] == Modality.CATEGORICAL
    assert schema.reasons["x"] == "set by user"
    with pytest.raises(SchemaError, match="nope"):
        infer_schema(df, "y", overrides={"nope": "text"})
    with pytest.raises(SchemaError, match="video"):
        infer_schema(df, "y", overrides={"x": "video"})


@pytest.mark.parametrize(
    "values, task",
    [
        (["a", "b", "a"], Task.CLASSIFICATION),
        ([True, False, True], Task.CLASSIFICATION),
        ([0, 1, 2, 1], Task.CLASSIFICATION),
        ([0.5, 1.25, 3.0], Task.REGRESSION),
        (list(range(100)), Task.REGRESSION),
    ],
)
def test_task_inference(values, task) -> None:
    assert infer_task(pd.Series(values, name="y"))[0] == task


def test_label_errors() -> None:
    df = pd.DataFrame({"x": [1, 2], "y": [0, 1]})
    with pytest.raises(SchemaError, match="not in the table"):
        infer_schema(df, "label")
    with pytest.raises(SchemaError, match="no input columns"):
        infer_schema(df[["y"]], "y")


def test_multitask_and_round_trip() -> None:
    df = pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 4.0], "a": ["p", "q", "p", "q"], "b": [0.1, 0.5, 0.7, 2.5]}
    )
    schema = infer_schema(df, ["a", "b"])
    assert schema.tasks == {"a": Task.CLASSIFICATION, "b": Task.REGRESSION}
    again = Schema.from_dict(schema.to_dict())
    assert again == schema
