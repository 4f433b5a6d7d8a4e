"""`crossfuse export` and `crossfuse predict EXPORT_DIR`, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfuse.cli.model_cmds import predict
from tests.export.test_onnx import make_table, train

# Runs the real app; registers `export` first if the app does not have it yet.
RUNNER = """
import typer.main
from crossfuse.cli.app import app, main
from crossfuse.cli.export_cmd import export
if "export" not in typer.main.get_command(app).commands:
    app.command()(export)
main()
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def model_and_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli_export")
    table = make_table(folder / "data")
    return train(folder / "model", table, "gated"), table


def test_export_then_predict_gives_the_same_csv(model_and_table, tmp_path: Path) -> None:
    model, table = model_and_table
    export = tmp_path / "export"
    result = cli(
        "export", str(model), "--format", "onnx", "--out", str(export), "--data", str(table)
    )
    assert result.returncode == 0, result.stderr
    assert "onnx export written to" in result.stdout and "data rows" in result.stdout
    assert json.loads((export / "export.json").read_text())["check"]["passed"]

    unlabelled = tmp_path / "new.csv"
    df = pd.read_csv(table).drop(columns=["label", "score"])
    for col in ("picture", "sound"):  # absolute media paths: the table moves
        df[col] = [str(table.parent / p) if isinstance(p, str) else p for p in df[col]]
    df.to_csv(unlabelled, index=False)
    result = cli(
        "predict", str(export), "--data", str(unlabelled), "--out", str(tmp_path / "o.csv")
    )
    assert result.returncode == 0, result.stderr
    assert "40 predictions written" in result.stdout
    onnx_csv = pd.read_csv(tmp_path / "o.csv")
    # the same command on the model directory (in-process: it is the PyTorch path)
    predict(model, unlabelled, tmp_path / "t.csv")
    torch_csv = pd.read_csv(tmp_path / "t.csv")
    assert list(onnx_csv.columns) == ["predicted_label", "p_label=a", "p_label=b"]
    assert list(onnx_csv.columns) == list(torch_csv.columns) and len(onnx_csv) == 40
    assert (onnx_csv["predicted_label"] == torch_csv["predicted_label"]).all()
    np.testing.assert_allclose(
        onnx_csv[["p_label=a", "p_label=b"]], torch_csv[["p_label=a", "p_label=b"]], atol=1e-4
    )


def test_torchscript_export_from_the_command_line(model_and_table, tmp_path: Path) -> None:
    model, _ = model_and_table
    export = tmp_path / "ts"
    result = cli("export", str(model), "--format", "torchscript", "--out", str(export))
    assert result.returncode == 0, result.stderr
    assert "synthetic rows" in result.stdout
    assert (export / "model.torchscript.pt").is_file() and not (export / "model.onnx").exists()
    manifest = json.loads((export / "export.json").read_text())
    assert manifest["format"] == "torchscript" and manifest["check"]["source"] == "synthetic"


def test_unsupported_format_is_a_clear_error(model_and_table, tmp_path: Path) -> None:
    model, _ = model_and_table
    result = cli("export", str(model), "--format", "tflite", "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "unknown export format 'tflite'; choose one of: onnx, torchscript" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x").exists()
