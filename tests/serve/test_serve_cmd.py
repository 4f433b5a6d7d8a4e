"""`crossfuse serve`: options become a ServeConfig and a store; uvicorn gets the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from crossfuse.cli import serve_cmd
from crossfuse.errors import ConfigError
from tests.serve.helpers import train_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("cmd"))


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(serve_cmd.serve)
    app.command("noop")(lambda: None)  # two commands: `serve` is then a subcommand
    return app


def test_serve_runs_uvicorn_with_the_configured_app(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, dict]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append((app, kw)))
    db = tmp_path / "fb" / "feedback.sqlite"
    result = CliRunner().invoke(
        _cli(),
        [
            "serve",
            str(model_dir),
            "--port",
            "8123",
            "--feedback-db",
            str(db),
            "--max-upload-mb",
            "0.5",
            "--max-batch",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    ((app, options),) = calls
    assert options == {"host": "127.0.0.1", "port": 8123, "log_level": "info"}
    config = app.state.service.config
    assert config.max_upload_bytes == 512 * 1024 and config.max_batch == 4
    assert app.state.store.path == db.resolve() and db.exists()


def test_several_workers_use_the_factory(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, dict]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setenv(serve_cmd.ENV_ARGS, "")  # restored (unset) after the test
    result = CliRunner().invoke(_cli(), ["serve", str(model_dir), "--workers", "2"])
    assert result.exit_code == 0, result.output
    ((target, options),) = calls
    assert target == "crossfuse.cli.serve_cmd:app_from_env"
    assert options["factory"] is True and options["workers"] == 2
    args = json.loads(serve_cmd.os.environ[serve_cmd.ENV_ARGS])
    assert args["model"] == str(model_dir.resolve()) and args["feedback_db"] is None
    app = serve_cmd.app_from_env()  # what each worker process builds
    assert app.state.store.path == (model_dir / "feedback" / "feedback.sqlite").resolve()


def test_bad_options_are_config_errors(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for args in (["--max-upload-mb", "0"], ["--workers", "0"], ["--max-batch", "0"]):
        result = CliRunner().invoke(_cli(), ["serve", str(model_dir), *args])
        assert isinstance(result.exception, ConfigError), args
    monkeypatch.delenv(serve_cmd.ENV_ARGS, raising=False)
    with pytest.raises(ConfigError, match="CROSSFUSE_SERVE_ARGS"):
        serve_cmd.app_from_env()
