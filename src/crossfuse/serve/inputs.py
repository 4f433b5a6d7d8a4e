"""Parsing and validating one row of model inputs sent to the service.

Every problem becomes an :class:`InputError` carrying the HTTP status and a message
that names the offending field, so a client can fix its request. Media are checked
by their content (magic bytes, then a real decode), never by file name or the
client's content type, and a string is never taken as a path on the server.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

from crossfuse.data.audio_io import decode_audio
from crossfuse.data.image import decode_image
from crossfuse.data.magic import kind_names, sniff
from crossfuse.errors import CellError
from crossfuse.serve.config import ServeConfig

MEDIA = ("image", "audio")


def allowed_types(modality: str) -> str:
    """The media kinds accepted for a modality, e.g. ``"PNG, JPEG, GIF, BMP, WebP, TIFF"``."""
    return ", ".join(kind_names(modality))


class InputError(Exception):
    """A request the server rejects: HTTP ``status`` and a ``detail`` naming the field."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field


def sniff_media(data: bytes, modality: str) -> str | None:
    """The media kind of ``data`` from its magic bytes (None when not one of ``modality``'s)."""
    kind = sniff(data, modality)
    return kind.name if kind is not None else None


def check_media(field: str, modality: str, data: bytes) -> str:
    """Check that ``data`` really is an image/audio file; returns its kind.

    Raises:
        InputError: 415 naming ``field`` and the allowed types when the content is not
            a decodable file of the column's modality.
    """
    kind = sniff_media(data, modality)
    if kind is None:
        raise InputError(
            415,
            f"field {field!r}: the content is not a supported {modality} file "
            f"(allowed: {allowed_types(modality)})",
            field,
        )
    try:
        if modality == "image":
            decode_image(data, channels=3)
        else:
            decode_audio(data)
    except CellError as e:
        raise InputError(
            415,
            f"field {field!r}: looks like {kind} but {e.reason} "
            f"(allowed: {allowed_types(modality)})",
            field,
        ) from None
    return kind


def decode_base64(field: str, value: str, limit: int) -> bytes:
    """Decode base64 (optionally a ``data:...;base64,`` URL) with a size check first."""
    text = value.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split())  # line breaks from MIME encoders are fine
    if len(text) // 4 * 3 > limit + 3:
        raise InputError(
            413, f"field {field!r}: the file is larger than {limit} bytes (max_upload_bytes)", field
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(422, f"field {field!r}: the base64 data does not decode", field) from None


class RowParser:
    """Turns client values into one model row: ``{column: value or None}``.

    Args:
        columns: every input column of the model and its modality (``text``, ``image``,
            ``audio``, ``numeric`` or ``categorical``).
        config: the service limits.
    """

    def __init__(self, columns: Mapping[str, str], config: ServeConfig) -> None:
        self.columns = dict(columns)
        self.config = config

    def media_columns(self) -> list[str]:
        return [c for c, m in self.columns.items() if m in MEDIA]

    def check_field(self, name: str) -> str:
        """The modality of field ``name``; 422 naming it when the model has no such input."""
        if name not in self.columns:
            known = ", ".join(repr(c) for c in self.columns)
            raise InputError(422, f"unknown field {name!r}; the model's inputs are {known}", name)
        return self.columns[name]

    def from_json(self, inputs: Any) -> dict[str, Any]:
        """A JSON object ``{column: value}``; media values are ``{"base64": "..."}``."""
        if not isinstance(inputs, dict):
            raise InputError(422, "field 'inputs' must be an object {column: value}", "inputs")
        row: dict[str, Any] = {}
        for name, value in inputs.items():
            modality = self.check_field(str(name))
            if modality in MEDIA:
                row[name] = self._json_media(name, modality, value)
            else:
                row[name] = self.scalar(name, modality, value)
        return self.complete(row)

    def from_form(self, fields: Mapping[str, str], files: Mapping[str, bytes]) -> dict[str, Any]:
        """Multipart form fields (strings) and uploads (bytes), already size-checked."""
        row: dict[str, Any] = {}
        for name, value in fields.items():
            modality = self.check_field(name)
            if modality in MEDIA:
                if value.strip():
                    raise self._path_error(name, modality)
                row[name] = None
            else:
                row[name] = self.scalar(name, modality, value)
        for name, data in files.items():
            modality = self.check_field(name)
            if modality not in MEDIA:
                raise InputError(
                    422,
                    f"field {name!r} is a {modality} input: send it as a value, not a file",
                    name,
                )
            row[name] = self.media(name, modality, data)
        return self.complete(row)

    def complete(self, row: dict[str, Any]) -> dict[str, Any]:
        """Every column in model order (None when not given); 422 when nothing is given."""
        if all(v is None for v in row.values()):
            raise InputError(
                422,
                "no inputs given; send at least one of " + ", ".join(map(repr, self.columns)),
            )
        return {c: row.get(c) for c in self.columns}

    def media(self, name: str, modality: str, data: bytes) -> bytes | None:
        """Size and content checks of one media file (empty = not given)."""
        if not data:
            return None
        if len(data) > self.config.max_upload_bytes:
            raise InputError(
                413,
                f"field {name!r}: the file is larger than {self.config.max_upload_bytes} bytes "
                "(max_upload_bytes)",
                name,
            )
        check_media(name, modality, data)
        return data

    def scalar(self, name: str, modality: str, value: Any) -> Any:
        """A text, numeric or categorical value (None, "" and blank strings are missing)."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if modality == "numeric":
            return _number(name, value)
        if modality == "text" and not isinstance(value, str):
            raise InputError(422, f"field {name!r} is text and must be a string", name)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InputError(422, f"field {name!r} must be a string or a number", name)
        text = value if isinstance(value, str) else str(value)
        if len(text) > self.config.max_text_chars:
            raise InputError(
                422,
                f"field {name!r}: the text has {len(text)} characters; the limit is "
                f"{self.config.max_text_chars} (max_text_chars)",
                name,
            )
        return text

    def _json_media(self, name: str, modality: str, value: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, str):
            if not value.strip():
                return None
            raise self._path_error(name, modality)
        if (
            not isinstance(value, dict)
            or set(value) != {"base64"}
            or not isinstance(value["base64"], str)
        ):
            raise InputError(
                422, f'field {name!r}: a {modality} must be given as {{"base64": "..."}}', name
            )
        data = decode_base64(name, value["base64"], self.config.max_upload_bytes)
        return self.media(name, modality, data)

    @staticmethod
    def _path_error(name: str, modality: str) -> InputError:
        return InputError(
            422,
            f"field {name!r}: file paths are not accepted; upload the {modality} file "
            '(multipart) or send it as {"base64": "..."}',
            name,
        )


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InputError(422, f"field {name!r} must be a number, got {value!r}", name)
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        shown = str(value)[:40]
        raise InputError(422, f"field {name!r} must be a number, got {shown!r}", name) from None
    if not math.isfinite(number):
        raise InputError(422, f"field {name!r} must be a finite number, got {value!r}", name)
    return number
