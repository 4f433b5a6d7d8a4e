"""Parsing one row of inputs: fields, limits, media checked by content, bodies read in limits."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crossfuse.errors import ConfigError
from crossfuse.serve.body import (
    check_length,
    form_limit,
    json_limit,
    read_form,
    read_json,
    read_urlencoded,
)
from crossfuse.serve.config import ServeConfig
from crossfuse.serve.inputs import InputError, RowParser, check_media, decode_base64, sniff_media
from tests.conftest import write_wav
from tests.serve.helpers import png_bytes

COLUMNS = {
    "note": "text",
    "picture": "image",
    "sound": "audio",
    "x": "numeric",
    "kind": "categorical",
}


@pytest.fixture
def wav(tmp_path: Path) -> bytes:
    write_wav(tmp_path / "tone.wav", 440.0)
    return (tmp_path / "tone.wav").read_bytes()


@pytest.fixture
def parser() -> RowParser:
    return RowParser(COLUMNS, ServeConfig(max_upload_bytes=20_000, max_text_chars=50))


def raises(status: int, *words: str):
    """Context manager: an InputError with ``status`` whose detail has every word."""

    class _Check:
        def __enter__(self):
            return self

        def __exit__(self, kind, exc, tb):
            assert isinstance(exc, InputError), f"expected InputError, got {exc!r}"
            assert exc.status == status, exc.detail
            for word in words:
                assert word in exc.detail, (word, exc.detail)
            return True

    return _Check()


def test_json_row_is_complete_and_typed(parser: RowParser, wav: bytes) -> None:
    png = png_bytes(90)
    row = parser.from_json(
        {
            "note": "beta item",
            "picture": {"base64": base64.b64encode(png).decode()},
            "sound": {"base64": "data:audio/wav;base64," + base64.b64encode(wav).decode()},
            "x": "1.5",
            "kind": 3,
        }
    )
    assert row == {"note": "beta item", "picture": png, "sound": wav, "x": 1.5, "kind": "3"}
    partial = parser.from_json({"x": 2, "note": "  "})
    assert partial == {"note": None, "picture": None, "sound": None, "x": 2.0, "kind": None}
    assert list(partial) == list(COLUMNS)  # model order, every column


def test_form_row_with_uploads(parser: RowParser, wav: bytes) -> None:
    row = parser.from_form({"note": "alpha", "x": "-0.25", "picture": ""}, {"sound": wav})
    assert row == {"note": "alpha", "picture": None, "sound": wav, "x": -0.25, "kind": None}


@pytest.mark.parametrize(
    ("inputs", "status", "words"),
    [
        ({"colour": "red"}, 422, ("unknown field 'colour'", "'note'")),
        ({}, 422, ("no inputs given",)),
        ({"note": None, "x": ""}, 422, ("no inputs given",)),
        ({"x": "twelve"}, 422, ("field 'x'", "number", "twelve")),
        ({"x": "nan"}, 422, ("field 'x'", "finite")),
        ({"x": True}, 422, ("field 'x'",)),
        ({"note": "w" * 51}, 422, ("field 'note'", "51 characters", "max_text_chars")),
        ({"note": 5}, 422, ("field 'note'", "string")),
        ({"kind": ["red"]}, 422, ("field 'kind'", "a string or a number")),
        ({"picture": "/etc/passwd"}, 422, ("field 'picture'", "file paths are not accepted")),
        ({"sound": "snd1.wav"}, 422, ("field 'sound'", "file paths are not accepted")),
        ({"picture": {"base64": "%%%not base64%%%"}}, 422, ("field 'picture'", "base64")),
        ({"picture": {"url": "http://x"}}, 422, ("field 'picture'", "base64")),
    ],
)
def test_json_row_errors_name_the_field(
    parser: RowParser, inputs: dict, status: int, words: tuple[str, ...]
) -> None:
    with raises(status, *words):
        parser.from_json(inputs)


def test_media_is_checked_by_content_not_name(parser: RowParser, wav: bytes) -> None:
    with raises(415, "field 'picture'", "PNG, JPEG"):
        parser.from_form({}, {"picture": b"just some text, named cat.png"})
    with raises(415, "field 'sound'", "WAV, FLAC"):
        parser.from_form({}, {"sound": png_bytes(10)})  # a PNG sent as the audio
    with raises(415, "field 'sound'", "WAV"):  # a WAV header, but cut short
        parser.from_form({}, {"sound": wav[:60]})
    with raises(422, "field 'x'", "not a file"):
        parser.from_form({}, {"x": b"1.0"})
    with raises(413, "field 'picture'", "max_upload_bytes"):
        parser.from_form({}, {"picture": png_bytes(10, size=400) + b"\0" * 20_000})
    assert check_media("p", "image", png_bytes(30)) == "PNG"
    assert check_media("s", "audio", wav) == "WAV"
    assert sniff_media(wav, "image") is None and sniff_media(png_bytes(1), "audio") is None


def test_base64_size_is_checked_before_decoding() -> None:
    big = base64.b64encode(b"\0" * 2000).decode()
    with raises(413, "field 'picture'", "1000 bytes"):
        decode_base64("picture", big, 1000)
    assert decode_base64("p", base64.b64encode(b"abc").decode(), 1000) == b"abc"
    assert decode_base64("p", "YW\nJj", 1000) == b"abc"  # MIME line breaks


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[str, bytes]:
    boundary = "XyZ123boundary"
    out = io.BytesIO()
    for name, filename, data in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.write(f"Content-Disposition: {disposition}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", out.getvalue()


def test_streamed_multipart_keeps_values_and_files(parser: RowParser, wav: bytes) -> None:
    ctype, body = _multipart([("note", None, "héllo".encode()), ("sound", "a.bin", wav)])
    fields, files = asyncio.run(read_form(ctype, _chunks(body), form_limit(parser), parser))
    assert fields == {"note": "héllo"} and files == {"sound": wav}


class _CountingStream:
    """An endless body that records how many bytes were pulled from it."""

    def __init__(self, head: bytes) -> None:
        self.head, self.pulled = head, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        self.pulled += len(self.head)
        while True:
            self.pulled += 4096
            yield b"\0" * 4096


def test_oversize_upload_stops_reading_at_the_limit(parser: RowParser) -> None:
    ctype, body = _multipart([("picture", "p.png", b"")])
    head = body[: body.index(b"\r\n\r\n") + 4]  # headers of the file part, then endless data
    stream = _CountingStream(head)
    with raises(413, "field 'picture'", "20000 bytes"):
        asyncio.run(read_form(ctype, stream.__aiter__(), form_limit(parser), parser))
    assert stream.pulled <= 20_000 + 4096 + len(head)  # never much past max_upload_bytes


@pytest.mark.parametrize(
    ("parts", "status", "words"),
    [
        ([("colour", None, b"red")], 422, ("unknown field 'colour'",)),
        ([("x", None, b"1"), ("x", None, b"2")], 422, ("'x' is given more than once",)),
        ([("note", "n.txt", b"hi")], 422, ("'note'", "not a file")),
        ([("note", None, b"w" * 201)], 422, ("'note'", "max_text_chars")),
    ],
)
def test_multipart_errors_name_the_field(
    parser: RowParser, parts: list, status: int, words: tuple[str, ...]
) -> None:
    ctype, body = _multipart(parts)
    with raises(status, *words):
        asyncio.run(read_form(ctype, _chunks(body), form_limit(parser), parser))


def test_declared_and_streamed_body_limits(parser: RowParser) -> None:
    limit = json_limit(parser)
    with raises(413, "max_upload_bytes", "'picture', 'sound'"):
        check_length({"content-length": str(limit + 1)}, limit, parser)
    check_length({"content-length": str(limit)}, limit, parser)  # at the limit: fine
    with raises(413, "larger than"):
        asyncio.run(read_json(_chunks(b" " * 5000), 4000, parser))
    with raises(422, "not valid JSON"):
        asyncio.run(read_json(_chunks(b"{nope"), 4000, parser))
    assert asyncio.run(read_json(_chunks(b'{"inputs": {"x": 1}}'), 4000, parser)) == {
        "inputs": {"x": 1}
    }
    fields = asyncio.run(read_urlencoded(_chunks(b"x=1.5&note=a+b"), 4000, parser))
    assert fields == {"x": "1.5", "note": "a b"}
    with raises(422, "unknown field 'y'"):
        asyncio.run(read_urlencoded(_chunks(b"y=1"), 4000, parser))


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"max_upload_bytes": 0}, "serve.max_upload_bytes"),
        ({"max_text_chars": 2.5}, "serve.max_text_chars"),
        ({"max_batch_rows": -1}, "serve.max_batch_rows"),
        ({"max_batch": True}, "serve.max_batch"),
        ({"request_timeout_s": 0}, "serve.request_timeout_s"),
        ({"batch_wait_ms": -1.0}, "serve.batch_wait_ms"),
        ({"batch_wait_ms": float("inf")}, "serve.batch_wait_ms"),
    ],
)
def test_serve_config_rejects_bad_values(options: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ServeConfig(**options)


def test_serve_config_defaults() -> None:
    config = ServeConfig()
    assert config.max_upload_bytes == 10 * 1024 * 1024 and config.max_text_chars == 10_000
    assert config.to_dict()["max_batch"] == 32 and ServeConfig(batch_wait_ms=0).batch_wait_ms == 0
