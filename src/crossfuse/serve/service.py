"""What the endpoints do: read and validate a request, score it, record it, answer.

One :class:`Service` per app holds the model (loaded once), its scorer and
micro-batcher, the feedback store and the limits. Every problem is an
:class:`~crossfuse.serve.inputs.InputError` naming the field, turned into JSON
``{"detail": "..."}`` by the app.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from starlette.requests import Request

import crossfuse
from crossfuse.api import FusionPredictor
from crossfuse.data.tabular import category_key
from crossfuse.feedback.store import FeedbackStore
from crossfuse.serve.batcher import BatchTimeout, MicroBatcher
from crossfuse.serve.body import (
    batch_limit,
    check_length,
    form_limit,
    json_limit,
    read_form,
    read_json,
    read_urlencoded,
)
from crossfuse.serve.config import ServeConfig
from crossfuse.serve.inputs import InputError, RowParser
from crossfuse.serve.predict import RowScorer

log = logging.getLogger(__name__)
FEEDBACK_FIELDS = {"request_id", "label", "comment", "inputs"}


def _json_object(doc: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InputError(422, "the body must be a JSON object")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise InputError(
            422, f"unknown field {unknown[0]!r} in the body; expected {sorted(allowed)}", unknown[0]
        )
    return doc


class Service:
    """The model, its batcher, the store and the limits, shared by the endpoints."""

    def __init__(self, model_dir: Path, config: ServeConfig, store: FeedbackStore) -> None:
        self.model_dir, self.config, self.store = model_dir, config, store
        self.predictor = FusionPredictor.load(model_dir)  # the live version
        self.model_version = self.predictor.version_  # the version actually loaded
        self.scorer = RowScorer(self.predictor)
        self.parser = RowParser(self.scorer.columns, config)
        self.batcher = MicroBatcher(
            self.scorer, max_batch=config.max_batch, wait_ms=config.batch_wait_ms
        )
        self.started = time.monotonic()
        self.task, self.encoder = next(iter(self.predictor.preprocessor_.labels.items()))

    async def parse_row(self, request: Request) -> dict[str, Any]:
        """One row from a multipart or url-encoded form, or JSON ``{"inputs": {...}}``."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
            limit = form_limit(self.parser)
            check_length(request.headers, limit, self.parser)
            if kind == "multipart/form-data":
                values, files = await read_form(
                    request.headers["content-type"], request.stream(), limit, self.parser
                )
            else:
                values, files = await read_urlencoded(request.stream(), limit, self.parser), {}
            return await asyncio.to_thread(self.parser.from_form, values, files)
        if kind == "application/json" or kind.endswith("+json"):
            doc = await self._read_json(request, json_limit(self.parser), {"inputs"})
            if "inputs" not in doc:
                raise InputError(
                    422, "field 'inputs' is required: {\"inputs\": {column: value}}", "inputs"
                )
            return await asyncio.to_thread(self.parser.from_json, doc["inputs"])
        raise InputError(
            415,
            f"Content-Type {kind or '(none)'!r}: use multipart/form-data, "
            "application/x-www-form-urlencoded or application/json",
        )

    async def _read_json(self, request: Request, limit: int, allowed: set[str]) -> dict[str, Any]:
        check_length(request.headers, limit, self.parser)
        return _json_object(await read_json(request.stream(), limit, self.parser), allowed)

    async def predict(self, row: dict[str, Any]) -> dict[str, Any]:
        """Score one row through the batcher and record it under a new request id."""
        try:
            result = await self.batcher.submit(row, timeout=self.config.request_timeout_s)
        except BatchTimeout:
            raise InputError(
                504, f"no prediction within {self.config.request_timeout_s} s (request_timeout_s)"
            ) from None
        response = {"request_id": uuid.uuid4().hex, **result, "model_version": self.model_version}
        try:
            await asyncio.to_thread(
                self.store.record_prediction,
                response["request_id"],
                row,
                result,
                self.model_version,
            )
        except Exception as e:  # noqa: BLE001 — the prediction still stands
            log.warning("could not record request %s: %s", response["request_id"], e)
            response["problems"] = [*result["problems"], f"feedback unavailable: {e}"]
        return response

    async def predict_batch(self, request: Request) -> dict[str, Any]:
        """``{"rows": [...]}`` → ``{"results": [...]}``, the rows batched together."""
        most = self.config.max_batch_rows
        doc = await self._read_json(request, batch_limit(self.parser, most), {"rows"})
        rows = doc.get("rows")
        if not isinstance(rows, list) or not rows:
            raise InputError(422, "field 'rows' must be a non-empty list of objects", "rows")
        if len(rows) > most:
            raise InputError(
                413, f"field 'rows': {len(rows)} rows; at most {most} (max_batch_rows)", "rows"
            )
        parsed = []
        for i, row in enumerate(rows):
            try:
                parsed.append(await asyncio.to_thread(self.parser.from_json, row))
            except InputError as e:
                raise InputError(e.status, f"rows[{i}]: {e.detail}", e.field) from None
        return {"results": list(await asyncio.gather(*map(self.predict, parsed)))}

    async def feedback(self, request: Request) -> dict[str, Any]:
        """Store the right answer for a served request id, or for inputs given here."""
        doc = await self._read_json(request, json_limit(self.parser), FEEDBACK_FIELDS)
        if "label" not in doc:
            raise InputError(422, "field 'label' is required", "label")
        label = self.check_label(doc["label"])
        request_id, comment, inputs = doc.get("request_id"), doc.get("comment"), doc.get("inputs")
        if request_id is not None and not isinstance(request_id, str):
            raise InputError(422, "field 'request_id' must be a string", "request_id")
        if comment is not None and (
            not isinstance(comment, str) or len(comment) > self.config.max_text_chars
        ):
            most = self.config.max_text_chars
            raise InputError(
                422, f"field 'comment' must be text of at most {most} characters", "comment"
            )
        if request_id is None and inputs is None:
            raise InputError(422, "give 'request_id' (from /predict) or 'inputs'", "request_id")
        if inputs is not None:
            inputs = await asyncio.to_thread(self.parser.from_json, inputs)
        try:
            feedback_id = await asyncio.to_thread(
                self.store.add_feedback,
                label=label,
                request_id=request_id,
                inputs=inputs,
                comment=comment or None,
                model_version=None if request_id else self.model_version,
            )
        except KeyError:
            raise InputError(404, f"unknown request_id {request_id!r}", "request_id") from None
        except ValueError as e:
            raise InputError(422, str(e)) from None
        return {"feedback_id": feedback_id, "stored": True}

    def check_label(self, value: Any) -> Any:
        """The model's own label value for ``value``; 422 naming ``label`` if it is not one."""
        if self.encoder.task == "classification":
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                by_key = {category_key(c): c for c in self.encoder.classes}
                if category_key(value) in by_key:
                    return by_key[category_key(value)]
            classes = ", ".join(map(repr, self.encoder.classes))
            raise InputError(422, f"field 'label': {value!r} is not one of {classes}", "label")
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise InputError(
                422, f"field 'label' must be a number, got {value!r}", "label"
            ) from None

    def model_info(self) -> dict[str, Any]:
        """What ``GET /model`` shows: label, classes, inputs, validation metrics, version."""
        metrics = self.predictor.metrics_.get("valid", {})
        summary = {
            task: {k: v for k, v in values.items() if isinstance(v, int | float)}
            for task, values in metrics.get("tasks", {}).items()
        }
        return {
            "label": self.predictor.label,
            "task": str(self.encoder.task),
            "classes": list(self.encoder.classes),
            "inputs": dict(self.scorer.columns),
            "metrics": {"rows": metrics.get("rows"), "tasks": summary},
            "fusion": self.predictor.config_.model.fusion,
            "model_version": self.model_version,
            "crossfuse_version": crossfuse.__version__,
            "limits": self.config.to_dict(),
        }

    def health(self) -> dict[str, Any]:
        uptime = round(time.monotonic() - self.started, 3)
        return {
            "status": "ok",
            "model_version": self.model_version,
            "uptime_s": uptime,
            "batches": self.batcher.batches,  # rows_scored / batches = mean batch size
            "rows_scored": self.batcher.rows,
        }
