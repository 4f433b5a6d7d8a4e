"""A durable log of served predictions and the corrections users send back.

One SQLite file in WAL mode (many readers, one writer at a time, safe across threads
and processes: every call opens its own connection). Media cells arrive as raw
bytes; they are written first, content-addressed and atomically, so a crash at any
point leaves either no row or a complete row whose files exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from crossfuse.atomic import atomic_write
from crossfuse.data.magic import sniff
from crossfuse.errors import ConfigError

BUSY_TIMEOUT_S = 10.0
MEDIA_KEY = "$media"  # inputs JSON: {column: {"$media": path relative to the db's folder}}
META_COLUMNS = ("predicted", "model_version", "time", "comment", "id")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    model_version TEXT,
    inputs TEXT NOT NULL,
    prediction TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    request_id TEXT NULL,
    model_version TEXT,
    label,
    comment TEXT,
    inputs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id);
"""


class FeedbackInputError(ConfigError, ValueError):
    """Bad arguments to the store (also a ValueError, for callers that catch that)."""


def default_store_path(model_dir: str | Path) -> Path:
    """Where a model's feedback lives: ``MODEL/feedback/feedback.sqlite``."""
    return Path(model_dir) / "feedback" / "feedback.sqlite"


def media_extension(data: bytes) -> str:
    """File extension from a file's magic bytes (``bin`` when unknown)."""
    kind = sniff(data)
    return kind.ext if kind is not None else "bin"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class FeedbackStore:
    """Predictions served and feedback received, in one SQLite file.

    Args:
        path: the SQLite file (created with its folder if absent).
        media_dir: where media bytes are stored (default ``<path's folder>/feedback_media``).
    """

    def __init__(self, path: str | Path, media_dir: str | Path | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        self.media_dir = (
            Path(media_dir).expanduser().resolve()
            if media_dir is not None
            else self.path.parent / "feedback_media"
        )
        self.label_column = "label"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            with _transaction(conn):
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)

    @classmethod
    def for_model(cls, model_dir: str | Path) -> FeedbackStore:
        """The default store of a model: ``MODEL/feedback/feedback.sqlite`` + ``media/``."""
        path = default_store_path(model_dir)
        return cls(path, media_dir=path.parent / "media")

    def set_label_column(self, name: str) -> None:
        """Name the corrected-label column of :meth:`to_frame` (the model's label)."""
        if not name:
            raise FeedbackInputError("label column name must not be empty")
        self.label_column = name

    # ----------------------------------------------------------------- writing
    def record_prediction(
        self,
        request_id: str,
        inputs: dict[str, Any],
        prediction: dict[str, Any],
        model_version: str,
    ) -> None:
        """Log one served prediction (media bytes are stored as files first)."""
        if not request_id:
            raise FeedbackInputError("request_id must not be empty")
        stored = json.dumps(self._store_inputs(inputs))
        pred = json.dumps(_jsonable(prediction, "prediction"))
        with self._connect() as conn, _transaction(conn):
            try:
                conn.execute(
                    "INSERT INTO predictions VALUES (?, ?, ?, ?, ?)",
                    (request_id, _now(), str(model_version), stored, pred),
                )
            except sqlite3.IntegrityError:
                raise FeedbackInputError(f"request_id {request_id!r} is already recorded") from None

    def add_feedback(
        self,
        *,
        label: Any,
        request_id: str | None = None,
        inputs: dict[str, Any] | None = None,
        comment: str | None = None,
        model_version: str | None = None,
    ) -> int:
        """Store a corrected label for a served request or for inputs given here.

        Returns:
            The new feedback id.

        Raises:
            KeyError: ``request_id`` was never recorded.
            FeedbackInputError: neither ``request_id`` nor ``inputs`` given, or no label.
        """
        if label is None or (isinstance(label, str) and not label.strip()):
            raise FeedbackInputError("feedback needs a label (the correct answer)")
        if request_id is None and inputs is None:
            raise FeedbackInputError("feedback needs a request_id or the full inputs")
        label = _jsonable(label, "label")
        if not isinstance(label, str | int | float):
            raise FeedbackInputError(f"label must be text or a number, got {label!r}")
        stored = json.dumps(self._store_inputs(inputs)) if inputs is not None else None
        with self._connect() as conn, _transaction(conn):
            if request_id is not None:
                row = conn.execute(
                    "SELECT inputs, model_version FROM predictions WHERE request_id = ?",
                    (request_id,),
                ).fetchone()
                if row is None:
                    raise KeyError(f"unknown request_id {request_id!r}")
                stored = stored if stored is not None else row[0]
                model_version = model_version if model_version is not None else row[1]
            cur = conn.execute(
                "INSERT INTO feedback (time, request_id, model_version, label, comment, inputs)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    _now(),
                    request_id,
                    None if model_version is None else str(model_version),
                    label,
                    comment,
                    stored,
                ),
            )
            return int(cur.lastrowid)

    # ----------------------------------------------------------------- reading
    def prediction(self, request_id: str) -> dict[str, Any] | None:
        """One recorded prediction (inputs with media as absolute paths), or None."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT request_id, time, model_version, inputs, prediction FROM predictions"
                " WHERE request_id = ?",
                (request_id,),
            ).fetchone()
        if row is None:
            return None
        return {
            "request_id": row[0],
            "time": row[1],
            "model_version": row[2],
            "inputs": self._load_inputs(row[3]),
            "prediction": json.loads(row[4]),
        }

    def feedback_rows(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """All feedback, oldest first (only the newest ``limit`` rows when given)."""
        query = (
            "SELECT f.id, f.time, f.request_id, f.model_version, f.label, f.comment, f.inputs,"
            " p.prediction FROM feedback f LEFT JOIN predictions p"
            " ON f.request_id = p.request_id ORDER BY f.id DESC"
        )
        params: tuple[Any, ...] = ()
        if limit is not None:
            if limit < 0:
                raise FeedbackInputError(f"limit must be ≥ 0, got {limit}")
            query, params = query + " LIMIT ?", (limit,)
        with self._connect() as conn:
            rows = conn.execute(query, params).fetchall()
        out = []
        for fid, time, rid, version, label, comment, inputs, prediction in reversed(rows):
            predicted, probabilities = _predicted(json.loads(prediction) if prediction else None)
            out.append(
                {
                    "id": fid,
                    "time": time,
                    "request_id": rid,
                    "model_version": version,
                    "label": label,
                    "predicted": predicted,
                    "probabilities": probabilities,
                    "comment": comment,
                    "inputs": self._load_inputs(inputs),
                }
            )
        return out

    def to_frame(self, label_column: str | None = None) -> pd.DataFrame:
        """One trainable row per feedback: inputs, the corrected label, then bookkeeping.

        Media cells are absolute paths of the stored files. Bookkeeping columns that
        clash with an input column get a ``feedback_`` prefix.
        """
        label_col = label_column or self.label_column
        rows = self.feedback_rows()
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(c for c in row["inputs"] if c != label_col))
        taken = {*columns, label_col}
        meta = {m: m if m not in taken else f"feedback_{m}" for m in META_COLUMNS}
        records = []
        for row in rows:
            record = {c: row["inputs"].get(c) for c in columns}
            record[label_col] = row["label"]
            record.update({meta[m]: row[m] for m in META_COLUMNS})
            records.append(record)
        return pd.DataFrame.from_records(records, columns=[*columns, label_col, *meta.values()])

    def __len__(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    # --------------------------------------------------------------- internals
    def _connect(self) -> contextlib.closing[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA synchronous=NORMAL")
        return contextlib.closing(conn)

    def _store_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(inputs, dict):
            raise FeedbackInputError(
                f"inputs must be a dict {{column: value}}, got {type(inputs).__name__}"
            )
        out: dict[str, Any] = {}
        for col, value in inputs.items():
            if isinstance(value, bytes | bytearray | memoryview):
                out[str(col)] = {MEDIA_KEY: self._save_media(bytes(value))}
            else:
                out[str(col)] = _cell(value, str(col))
        return out

    def _save_media(self, data: bytes) -> str:
        """Write ``data`` once as ``<sha256>.<ext>`` (temp file + rename); its stored reference."""
        self.media_dir.mkdir(parents=True, exist_ok=True)
        target = self.media_dir / f"{hashlib.sha256(data).hexdigest()}.{media_extension(data)}"
        if not target.exists():
            atomic_write(target, data, prefix=".tmp-")
        try:
            return target.relative_to(self.path.parent).as_posix()
        except ValueError:  # media kept outside the database's folder
            return str(target)

    def _load_inputs(self, text: str) -> dict[str, Any]:
        inputs = json.loads(text)
        for col, value in inputs.items():
            if isinstance(value, dict) and MEDIA_KEY in value:
                inputs[col] = str(self.path.parent / value[MEDIA_KEY])
        return inputs


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _cell(value: Any, column: str) -> str | int | float | bool | None:
    """A JSON-safe input cell; NaN and pandas NA become None."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # numpy scalars
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if value is pd.NA or value is pd.NaT:
        return None
    raise FeedbackInputError(
        f"input {column!r}: unsupported value of type {type(value).__name__} "
        "(use text, a number, file bytes or None)"
    )


def _jsonable(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, default=_json_default))
    except (TypeError, ValueError) as e:
        raise FeedbackInputError(f"{what} is not JSON-serialisable: {e}") from None


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _predicted(prediction: dict[str, Any] | None) -> tuple[Any, dict[str, float] | None]:
    """(predicted label or value, probabilities of the first task) from a stored response."""
    if not isinstance(prediction, dict):
        return None, None
    tasks = prediction.get("predictions")
    first = next(iter(tasks.values()), {}) if isinstance(tasks, dict) and tasks else {}
    predicted = prediction.get("label", first.get("label", first.get("value")))
    probabilities = prediction.get("probabilities", first.get("probabilities"))
    return predicted, probabilities if isinstance(probabilities, dict) else None
