"""Reading request bodies within limits: JSON, and streamed multipart forms.

A body is never read past its limit: ``Content-Length`` is checked before reading, and
the bytes are counted while they stream in (a client may lie or use chunked encoding).
Multipart parts are kept in memory, each capped as it arrives (an upload at
``max_upload_bytes``, a value at what ``max_text_chars`` can take), so a request can
never make the server hold more than its limit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from crossfuse.serve.inputs import MEDIA, InputError, RowParser

OVERHEAD = 64 * 1024  # part headers, boundaries, small JSON keys
NUMBER_BYTES = 1024  # a numeric value's field
BATCH_BODY_CAP = 64 * 1024 * 1024  # a /predict/batch body is held in memory whole


def form_limit(parser: RowParser) -> int:
    """The largest multipart body one row can need."""
    total = OVERHEAD
    for modality in parser.columns.values():
        if modality in MEDIA:
            total += parser.config.max_upload_bytes
        elif modality == "numeric":
            total += NUMBER_BYTES
        else:
            total += 4 * parser.config.max_text_chars
    return total


def json_limit(parser: RowParser, rows: int = 1) -> int:
    """The largest JSON body ``rows`` rows can need (media as base64: 4/3 of the size)."""
    per_row = OVERHEAD
    for modality in parser.columns.values():
        if modality in MEDIA:
            per_row += parser.config.max_upload_bytes * 4 // 3 + 16
        elif modality == "numeric":
            per_row += NUMBER_BYTES
        else:  # JSON escapes (\uXXXX) can take 6 bytes a character, 12 for a surrogate pair
            per_row += 12 * parser.config.max_text_chars
    return per_row * rows


def batch_limit(parser: RowParser, rows: int) -> int:
    """A batch body's limit: ``rows`` rows' worth, but at most ``BATCH_BODY_CAP`` (or one
    row's limit, when that is larger) — send large media through ``/predict`` instead."""
    return max(json_limit(parser), min(json_limit(parser, rows), BATCH_BODY_CAP))


def _too_large(size: int | str, limit: int, parser: RowParser) -> InputError:
    media = ", ".join(repr(c) for c in parser.media_columns()) or "none"
    return InputError(
        413,
        f"request body of {size} bytes is larger than the {limit} bytes accepted "
        f"(max_upload_bytes = {parser.config.max_upload_bytes} per file; media fields: {media})",
    )


def check_length(headers: Mapping[str, str], limit: int, parser: RowParser) -> None:
    """413 at once when the declared ``Content-Length`` is over ``limit``."""
    declared = headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit, parser)


async def read_limited(
    stream: AsyncIterator[bytes], limit: int, parser: RowParser
) -> AsyncIterator[bytes]:
    """Pass chunks through, failing with 413 as soon as more than ``limit`` bytes came."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise _too_large(f"more than {limit}", limit, parser)
        yield chunk


async def read_json(stream: AsyncIterator[bytes], limit: int, parser: RowParser) -> Any:
    """The JSON document of a body of at most ``limit`` bytes (422 when it is not JSON)."""
    body = bytearray()
    async for chunk in read_limited(stream, limit, parser):
        body.extend(chunk)
    try:
        return json.loads(bytes(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(422, f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise InputError(422, "the body is not valid JSON: nested too deeply") from None


async def read_urlencoded(
    stream: AsyncIterator[bytes], limit: int, parser: RowParser
) -> dict[str, str]:
    """A ``application/x-www-form-urlencoded`` body (values only, no files)."""
    body = bytearray()
    async for chunk in read_limited(stream, limit, parser):
        body.extend(chunk)
    try:
        pairs = parse_qsl(
            bytes(body).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=len(parser.columns),
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(422, f"malformed form body: {e}") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        parser.check_field(name)
        if name in fields:
            raise InputError(422, f"field {name!r} is given more than once", name)
        fields[name] = value
    return fields


class _FormCollector:
    """python-multipart callbacks that keep each part in memory, capped as it arrives."""

    def __init__(self, parser: RowParser, charset: str) -> None:
        self.parser = parser
        self.charset = charset
        self.fields: dict[str, str] = {}
        self.files: dict[str, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._data = bytearray()
        self._limit = 0

    def on_part_begin(self) -> None:
        self._disposition, self._data = b"", bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise InputError(422, "a multipart part has no field name (Content-Disposition)")
        name = options[b"name"].decode(self.charset, errors="replace")
        modality = self.parser.check_field(name)
        if name in self.fields or name in self.files:
            raise InputError(422, f"field {name!r} is given more than once", name)
        self._name, self._is_file = name, b"filename" in options
        if self._is_file and modality not in MEDIA:
            raise InputError(
                422, f"field {name!r} is a {modality} input: send it as a value, not a file", name
            )
        config = self.parser.config
        self._limit = config.max_upload_bytes if self._is_file else 4 * config.max_text_chars

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if len(self._data) + (end - start) > self._limit:
            name, config = self._name, self.parser.config
            if self._is_file:
                raise InputError(
                    413,
                    f"field {name!r}: the file is larger than {config.max_upload_bytes} bytes "
                    "(max_upload_bytes)",
                    name,
                )
            raise InputError(
                422,
                f"field {name!r}: the value is longer than {config.max_text_chars} characters "
                "(max_text_chars)",
                name,
            )
        self._data += data[start:end]

    def on_part_end(self) -> None:
        if self._is_file:
            self.files[self._name] = bytes(self._data)
        else:
            try:
                self.fields[self._name] = bytes(self._data).decode(self.charset)
            except UnicodeDecodeError:
                raise InputError(
                    422, f"field {self._name!r} is not valid {self.charset} text", self._name
                ) from None


async def read_form(
    content_type: str, stream: AsyncIterator[bytes], limit: int, parser: RowParser
) -> tuple[dict[str, str], dict[str, bytes]]:
    """Stream a ``multipart/form-data`` body into ``(values, uploads)`` by field name."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InputError(422, "multipart body without a boundary in its Content-Type")
    collector = _FormCollector(parser, "utf-8")  # what browsers and HTTP clients send
    callbacks = {
        name: getattr(collector, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    multipart = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in read_limited(stream, limit, parser):
            multipart.write(chunk)
        multipart.finalize()
    except FormParserError as e:
        raise InputError(422, f"malformed multipart body: {e}") from None
    return collector.fields, collector.files
