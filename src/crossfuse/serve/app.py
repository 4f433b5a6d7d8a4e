"""The HTTP app: predictions (single, batch), feedback, model info and the web page.

The model is loaded once, when the app is created; the lifespan starts and stops the
micro-batcher. Requests are validated (:mod:`crossfuse.serve.inputs`), scored in a
worker thread and recorded in the feedback store under their request id, so a user
can later say what the right answer was. Errors are JSON ``{"detail": "..."}``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

import crossfuse
from crossfuse.feedback.store import FeedbackStore
from crossfuse.serve.config import ServeConfig
from crossfuse.serve.inputs import InputError
from crossfuse.serve.openapi import FEEDBACK_BODY, PREDICT_BATCH_BODY, PREDICT_BODY
from crossfuse.serve.service import Service

STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
PAGE_HEADERS = {  # the page loads nothing from elsewhere; previews are blob: URLs
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:",
    "X-Content-Type-Options": "nosniff",
}


@functools.cache
def _static(name: str) -> str:
    return (resources.files("crossfuse.serve") / "static" / name).read_text(encoding="utf-8")


def create_app(
    model_dir: str | Path, config: ServeConfig | None = None, store: FeedbackStore | None = None
) -> FastAPI:
    """The service for one model directory (its live version), loaded once, now.

    Args:
        model_dir: a model directory written by ``save`` (or one with versions).
        config: limits and batching (defaults: :class:`ServeConfig`).
        store: where predictions and feedback go (default ``MODEL/feedback/``).
    """
    model_dir = Path(model_dir)
    if store is None:  # (not `store or ...`: an empty store is falsy, it has a length)
        store = FeedbackStore.for_model(model_dir)
    service = Service(model_dir, config or ServeConfig(), store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()

    app = FastAPI(
        title="crossfuse",
        version=crossfuse.__version__,
        description="Predictions from a cross-modal crossfuse model, and feedback on them.",
        lifespan=lifespan,
    )
    app.state.service, app.state.batcher, app.state.store = service, service.batcher, store

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, 422)

    @app.post("/predict", openapi_extra=PREDICT_BODY, summary="Predict one row")
    async def predict(request: Request) -> dict[str, Any]:
        """Multipart form (media as file uploads) or JSON ``{"inputs": {...}}``."""
        return await service.predict(await service.parse_row(request))

    @app.post("/predict/batch", openapi_extra=PREDICT_BATCH_BODY, summary="Predict many rows")
    async def predict_batch(request: Request) -> dict[str, Any]:
        """JSON ``{"rows": [{column: value}, ...]}`` (media as ``{"base64": ...}``)."""
        return await service.predict_batch(request)

    @app.post("/feedback", openapi_extra=FEEDBACK_BODY, summary="Send the right answer")
    async def feedback(request: Request) -> dict[str, Any]:
        """The correct label for a served ``request_id`` (or for ``inputs`` given here)."""
        return await service.feedback(request)

    @app.get("/model", summary="The model: label, classes, inputs, metrics")
    async def model() -> dict[str, Any]:
        return service.model_info()

    @app.get("/health", summary="Liveness")
    async def health() -> dict[str, Any]:
        return service.health()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> Response:
        return HTMLResponse(_static("index.html"), headers=PAGE_HEADERS)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)  # no icon, and no 404 in the browser's console

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise InputError(404, f"no static file {name!r}")
        return Response(_static(name), media_type=STATIC[name], headers=PAGE_HEADERS)

    return app
