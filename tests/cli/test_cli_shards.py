"""`crossfuse datasets build shards`, and training/prediction on the shards it writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from crossfuse.api import FusionPredictor
from crossfuse.cli.shards_cmd import build_shards_cmd
from crossfuse.data.table import read_table
from crossfuse.errors import ConfigError
from tests.conftest import TINY_CONFIG, make_toy_table


def _cli() -> typer.Typer:
    """`datasets build shards` as the app registers it (a no-op beside each command keeps
    typer from collapsing single-command groups)."""
    build = typer.Typer()
    build.command("shards")(build_shards_cmd)
    build.command("noop")(lambda: None)
    datasets = typer.Typer()
    datasets.add_typer(build, name="build")
    datasets.command("noop")(lambda: None)
    app = typer.Typer()
    app.add_typer(datasets, name="datasets")
    app.command("noop")(lambda: None)
    return app


def build(*args: str) -> object:
    return CliRunner().invoke(_cli(), ["datasets", "build", "shards", *args])


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Toy train/test tables as CSV, and as shards written by the command."""
    root = tmp_path_factory.mktemp("shards")
    paths = {
        "train": make_toy_table(root / "train", n=160, seed=0),
        "test": make_toy_table(root / "test", n=80, seed=1),
    }
    for name in ("train", "test"):
        out = root / f"{name}-shards"
        result = build("--table", str(paths[name]), "--out", str(out), "--rows-per-shard", "50")
        assert result.exit_code == 0, result.output
        paths[f"{name}-shards"] = out
    return paths


def test_the_command_writes_shards(toy: dict[str, Path]) -> None:
    out = toy["train-shards"]
    assert sorted(p.name for p in out.glob("*")) == [f"shard-00000{i}.tar" for i in range(4)]
    csv, shards = read_table(toy["train"]).df, read_table(out).df
    assert len(shards) == 160 and shards["__key__"].tolist()[:2] == ["000000", "000001"]
    for col in ("note", "x", "label", "score"):
        pd.testing.assert_series_equal(shards[col], csv[col], check_dtype=False)
    assert shards["picture"][0] == "shard-000000.tar::000000.picture"


def test_the_command_reports_and_refuses(tmp_path: Path) -> None:
    csv = make_toy_table(tmp_path / "t", n=12)
    df = pd.read_csv(csv)
    df.loc[4, "picture"] = "lost.png"
    df.to_csv(csv, index=False)
    result = build("--table", str(csv), "--out", str(tmp_path / "o"), "--rows-per-shard", "5")
    assert result.exit_code == 0, result.output
    assert "12 rows written as 3 shard(s)" in result.stdout
    assert "(media columns: picture)" in result.stdout
    assert "1 media cell(s) left out" in result.stderr
    assert "row 4, column 'picture', file " in result.stderr and "lost.png" in result.stderr
    again = build("--table", str(csv), "--out", str(tmp_path / "o"))
    assert isinstance(again.exception, ConfigError) and "already holds 3 shard" in str(
        again.exception
    )
    forced = build(
        "--table", str(csv), "--out", str(tmp_path / "o"), "--overwrite", "--media", "picture"
    )
    assert forced.exit_code == 0 and "(media columns: picture)" in forced.stdout
    assert [p.name for p in (tmp_path / "o").glob("*.tar")] == ["shard-000000.tar"]
    bad = build("--table", str(csv), "--out", str(tmp_path / "o2"), "--rows-per-shard", "0")
    assert isinstance(bad.exception, ConfigError) and "rows_per_shard" in str(bad.exception)


def test_training_and_prediction_on_shards_match_the_csv(toy: dict[str, Path]) -> None:
    def fit(train: Path) -> FusionPredictor:
        predictor = FusionPredictor(
            "label", config=TINY_CONFIG, modalities={"score": "ignore"}, progress=False
        )
        return predictor.fit(str(train), seed=0)

    on_csv, on_shards = fit(toy["train"]), fit(toy["train-shards"])
    assert on_shards.preprocessor_.inputs == {
        "picture": "image",
        "note": "text",
        "tabular": "tabular",
    }
    acc = {
        name: model.evaluate(str(toy[test]))["tasks"]["label"]["accuracy"]
        for name, model, test in [("csv", on_csv, "test"), ("shards", on_shards, "test-shards")]
    }
    assert acc["csv"] > 0.8 and abs(acc["csv"] - acc["shards"]) <= 0.05
    # one model, the same rows from a CSV or from shards: the same predictions
    pd.testing.assert_frame_equal(
        on_csv.predict_proba(str(toy["test"])), on_csv.predict_proba(str(toy["test-shards"]))
    )
    assert (
        on_csv.predict(str(toy["test"])).tolist()
        == on_csv.predict(str(toy["test-shards"] / "shard-{000000..000001}.tar")).tolist()
    )
    streamed = on_shards.evaluate(str(toy["test-shards"]), chunk_rows=30)
    whole = on_shards.evaluate(str(toy["test-shards"]))
    assert streamed["tasks"]["label"]["accuracy"] == pytest.approx(
        whole["tasks"]["label"]["accuracy"], abs=1e-9
    )
