"""`crossfuse features` and streamed embeddings; `crossfuse evaluate --chunk-rows`."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer

import crossfuse.evaluation.streaming as streaming
from crossfuse.api import FusionPredictor
from crossfuse.cli.features_cmd import features
from crossfuse.cli.model_cmds import evaluate
from crossfuse.errors import ConfigError
from crossfuse.evaluation.streaming import count_rows
from tests.conftest import TINY_CONFIG, make_toy_table
from tests.evaluation.test_streaming import assert_close, chunk_sizes_seen

cli_app = importlib.import_module("crossfuse.cli.app")  # the package re-exports `app`


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("features")
    csv = make_toy_table(folder, n=30)
    pd.read_csv(csv).to_parquet(folder / "toy.parquet")
    return csv


@pytest.fixture(scope="module")
def model_dir(toy: Path) -> Path:
    config = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}}
    predictor = FusionPredictor("label", config=config, modalities={"score": "ignore"})
    predictor.progress = False
    return predictor.fit(toy, seed=0).save(toy.parent / "model")


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> FusionPredictor:
    return FusionPredictor.load(model_dir)


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str):
    """Run ``crossfuse ARGS`` through the real entry point, with `features` registered."""
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    app.command()(evaluate)
    app.command()(features)
    monkeypatch.setattr(cli_app, "app", app)
    monkeypatch.setattr(sys, "argv", ["crossfuse", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        cli_app.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


def test_features_writes_the_fused_embeddings(
    predictor, model_dir, toy, tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "emb.npy"
    code, stdout, _ = cli(
        monkeypatch, capsys, "features", model_dir, "--data", toy, "--out", out, "--chunk-rows", 7
    )
    assert code == 0
    saved = np.load(out)
    assert saved.dtype == np.float32 and saved.shape == (30, 16)
    np.testing.assert_allclose(saved, predictor.extract_embedding(toy), atol=1e-6)
    assert f"30 fused embeddings of size 16 written to {out}" in stdout
    assert leftovers(tmp_path) == []


def test_features_per_input(predictor, model_dir, toy, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "emb.npy"
    code, stdout, _ = cli(
        monkeypatch, capsys, "features", model_dir, "-d", toy, "-o", out, "--per-input"
    )
    assert code == 0 and not out.exists()
    whole = predictor.extract_embedding(toy, fused=False)
    assert set(whole) == {"note", "picture", "tabular"}
    for name, array in whole.items():
        np.testing.assert_allclose(np.load(tmp_path / f"emb.{name}.npy"), array, atol=1e-6)
    assert stdout.count("embeddings of size") == 3 and leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["features", "evaluate"])
@pytest.mark.parametrize("bad", ["0", "-3"])
def test_bad_chunk_rows_is_one_line_and_exit_2(
    model_dir, toy, tmp_path, monkeypatch, capsys, command: str, bad: str
) -> None:
    extra = ["--out", tmp_path / "e.npy"] if command == "features" else []
    code, _, err = cli(
        monkeypatch, capsys, command, model_dir, "--data", toy, *extra, f"--chunk-rows={bad}"
    )
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: --chunk-rows must be a positive integer, got {bad}"
    ]
    assert not (tmp_path / "e.npy").exists() and leftovers(tmp_path) == []


def test_evaluate_chunk_rows_matches_whole_table(
    model_dir, toy, tmp_path, monkeypatch, capsys
) -> None:
    args = ["evaluate", model_dir, "--data", toy, "--ablate", "--json", "--no-report"]
    code, stdout, _ = cli(monkeypatch, capsys, *args)
    assert code == 0
    whole = json.loads(stdout)
    (model_dir / "report.html").unlink(missing_ok=True)
    code, stdout, err = cli(monkeypatch, capsys, *args[:-1], "--chunk-rows", "4")
    assert code == 0
    assert_close(json.loads(stdout), whole)
    assert (model_dir / "report.html").is_file()  # from the streamed metrics
    assert "need the whole table" in err and len(err.strip().splitlines()) == 1


def test_evaluate_refuses_robustness_with_chunk_rows(model_dir, toy, monkeypatch, capsys) -> None:
    code, _, err = cli(
        monkeypatch, capsys, "evaluate", model_dir, "-d", toy, "--robustness", "--chunk-rows", 5
    )
    assert code == 2
    assert err.strip().splitlines() == [
        "error: --robustness needs the whole table; drop --chunk-rows to use it"
    ]


def test_extract_embedding_streams_into_a_memmap(
    predictor, toy, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = predictor.extract_embedding(toy)
    seen = chunk_sizes_seen(monkeypatch)
    parquet = toy.with_suffix(".parquet")
    written = predictor.extract_embedding(parquet, chunk_rows=8, out=tmp_path / "e.npy")
    assert isinstance(written, np.memmap) and not written.flags.writeable
    np.testing.assert_allclose(written, whole, atol=1e-6)
    assert seen == [8, 8, 8, 6] and leftovers(tmp_path) == []
    in_memory = predictor.extract_embedding(toy, chunk_rows=7)
    assert isinstance(in_memory, np.ndarray) and not isinstance(in_memory, np.memmap)
    np.testing.assert_allclose(in_memory, whole, atol=1e-6)
    assert count_rows(parquet) == count_rows(toy, chunk_rows=4) == 30


def test_failed_extraction_leaves_no_file(predictor, toy, tmp_path, monkeypatch) -> None:
    real = streaming.iter_embeddings

    def broken(*args, **kw):
        for i, part in enumerate(real(*args, **kw)):
            if i == 2:
                raise RuntimeError("disk on fire")
            yield part

    monkeypatch.setattr(streaming, "iter_embeddings", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        predictor.extract_embedding(toy, chunk_rows=5, out=tmp_path / "e.npy")
    assert list(tmp_path.iterdir()) == []


def test_extract_embedding_refuses_a_non_npy_out(predictor, toy, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"out must be a \.npy file"):
        predictor.extract_embedding(toy, out=tmp_path / "e.csv")
    assert list(tmp_path.iterdir()) == []
