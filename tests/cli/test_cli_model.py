"""train → evaluate → predict from the command line on a tiny table."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.cli.test_cli_data import run
from tests.conftest import TINY_CONFIG, make_toy_table


@pytest.fixture(scope="module")
def model_dir(toy_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_CONFIG, "modalities": {"score": "ignore"}}))
    out = folder / "model"
    result = run(
        "train",
        "-c",
        str(recipe),
        "--train",
        str(toy_table),
        "--label",
        "label",
        "--fusion",
        "late",
        "--epochs",
        "4",
        "--out",
        str(out),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "model written to" in result.stdout and "accuracy" in result.stdout
    return out


def test_train_writes_a_model_dir(model_dir: Path) -> None:
    meta = json.loads((model_dir / "crossfuse.json").read_text())
    assert meta["config"]["model"]["fusion"] == "late"
    assert meta["config"]["train"]["epochs"] == 4
    assert meta["schema"]["columns"]["score"] == "ignore"


def test_evaluate_with_ablation_json(model_dir: Path, toy_table: Path, tmp_path: Path) -> None:
    saved = tmp_path / "m.json"
    result = run(
        "evaluate",
        str(model_dir),
        "--data",
        str(toy_table),
        "--ablate",
        "--json",
        "--save",
        str(saved),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tasks"]["label"]["accuracy"] > 0.7
    assert set(report["ablation"]["without"]) == {"note", "picture", "tabular"}
    assert set(report["ablation"]["only"]["picture"]["label"]) >= {"accuracy", "delta"}
    assert json.loads(saved.read_text()) == report


def test_evaluate_table_output(model_dir: Path, toy_table: Path) -> None:
    result = run("evaluate", str(model_dir), "--data", str(toy_table), "--ablate")
    assert result.returncode == 0, result.stderr
    assert "Metrics on" in result.stdout and "Ablation" in result.stdout


def test_predict_writes_csv(model_dir: Path, toy_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    unlabelled = tmp_path / "new.csv"
    df = pd.read_csv(toy_table).drop(columns=["label", "score"])
    df["picture"] = [str(toy_table.parent / p) for p in df["picture"]]  # absolute media paths
    df.head(10).to_csv(unlabelled, index=False)
    result = run("predict", str(model_dir), "--data", str(unlabelled), "--out", str(out))
    assert result.returncode == 0, result.stderr
    preds = pd.read_csv(out)
    assert list(preds.columns) == ["predicted_label", "p_label=a", "p_label=b"]
    assert len(preds) == 10 and preds["predicted_label"].isin(["a", "b"]).all()


def test_predict_streams_chunks_with_the_same_result(
    model_dir: Path, toy_table: Path, tmp_path: Path
) -> None:
    whole, chunked = tmp_path / "whole.csv", tmp_path / "chunked.csv"
    table = tmp_path / "rows.jsonl"
    df = pd.read_csv(toy_table).drop(columns=["label", "score"]).head(23)
    df["picture"] = [str(toy_table.parent / p) for p in df["picture"]]
    df.loc[3, "note"] = None  # a missing text cell inside a chunk
    df.to_json(table, orient="records", lines=True)
    for out, rows in ((whole, "1000"), (chunked, "5")):
        result = run(
            "predict", str(model_dir), "--data", str(table), "--out", str(out), "--chunk-rows", rows
        )
        assert result.returncode == 0, result.stderr
        assert "23 predictions written" in result.stdout
    pd.testing.assert_frame_equal(pd.read_csv(whole), pd.read_csv(chunked), atol=1e-6)
    assert not list(tmp_path.glob(".*.partial"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--train", "{table}"], "--label"),
        (["train", "--train", "{table}", "-l", "label", "--fusion", "magic"], "unknown fusion"),
        (["evaluate", "/nonexistent/model", "--data", "{table}"], "not found"),
        (["predict", "{table}", "--data", "{table}"], "not found"),
    ],
)
def test_model_command_mistakes(toy_table: Path, args: list[str], message: str) -> None:
    result = run(*[a.replace("{table}", str(toy_table)) for a in args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_embed_fills_the_cache_once(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    table = make_toy_table(tmp_path / "data", n=40)  # the default image encoder is slow
    env = {**os.environ, "CROSSFUSE_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    args = [
        sys.executable,
        "-m",
        "crossfuse",
        "embed",
        "--train",
        str(table),
        "--label",
        "label",
    ]

    def embed() -> str:
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = embed()
    assert "Embedding cache" in first and "picture" in first and "note" in first
    second = embed()
    rows = {line.split("│")[1].strip(): line for line in second.splitlines() if "│" in line}
    assert rows["picture"].split("│")[2].strip() == "0"  # nothing encoded the second time
    assert (tmp_path / "cache" / "cache.sqlite").is_file()
