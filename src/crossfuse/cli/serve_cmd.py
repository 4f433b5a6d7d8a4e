"""`crossfuse serve`: the HTTP prediction service (and its web page) for a model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from crossfuse.cli.common import out
from crossfuse.errors import ConfigError

ENV_ARGS = "CROSSFUSE_SERVE_ARGS"  # how worker processes learn what to serve


def serve(
    model: Annotated[Path, typer.Argument(help="Model directory (its live version is served).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    feedback_db: Annotated[
        Path | None,
        typer.Option(help="SQLite file for predictions and feedback (default MODEL/feedback/)."),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest image/audio file, MiB.")] = 10.0,
    max_text_chars: Annotated[int, typer.Option(help="Longest text value.")] = 10_000,
    max_batch_rows: Annotated[int, typer.Option(help="Most rows in one /predict/batch.")] = 64,
    max_batch: Annotated[int, typer.Option(help="Most rows the model scores at once.")] = 32,
    batch_wait_ms: Annotated[
        float, typer.Option(help="How long a row waits for others to batch with.")
    ] = 5.0,
    timeout: Annotated[float, typer.Option(help="Seconds before a prediction gives 504.")] = 30.0,
    workers: Annotated[
        int, typer.Option(help="Server processes (each loads the model; they share the store).")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve predictions, feedback and a web page for MODEL over HTTP."""
    import uvicorn

    if max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb must be > 0, got {max_upload_mb}")
    if workers < 1:
        raise ConfigError(f"--workers must be ≥ 1, got {workers}")
    args = {
        "model": str(model.resolve()),
        "feedback_db": str(feedback_db.resolve()) if feedback_db else None,
        "config": {
            "max_upload_bytes": int(max_upload_mb * 1024 * 1024),
            "max_text_chars": max_text_chars,
            "max_batch_rows": max_batch_rows,
            "max_batch": max_batch,
            "batch_wait_ms": batch_wait_ms,
            "request_timeout_s": timeout,
        },
    }
    app = app_from_args(args)  # loads the model now: a bad directory fails before listening
    out.print(f"serving [bold]{model}[/bold] on http://{host}:{port}/ (API docs: /docs)")
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    os.environ[ENV_ARGS] = json.dumps(args)
    uvicorn.run(
        "crossfuse.cli.serve_cmd:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


def app_from_args(args: dict[str, Any]):
    """Build the app from the command's arguments (a plain dict, so workers can share it)."""
    from crossfuse.feedback.store import FeedbackStore
    from crossfuse.serve import ServeConfig, create_app

    store = FeedbackStore(args["feedback_db"]) if args.get("feedback_db") else None
    return create_app(args["model"], ServeConfig(**args["config"]), store=store)


def app_from_env():
    """uvicorn factory for worker processes: the arguments come from the environment."""
    raw = os.environ.get(ENV_ARGS)
    if not raw:
        raise ConfigError(f"{ENV_ARGS} is not set; start the server with `crossfuse serve`")
    return app_from_args(json.loads(raw))
