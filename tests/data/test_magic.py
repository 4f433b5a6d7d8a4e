"""Media formats by their first bytes: one table for schema, server, store and report."""

import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from crossfuse.data.magic import kind_names, sniff


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _audio(fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(800, dtype=np.float32), 8000, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "name", "ext"),
    [
        ("PNG", "PNG", "png"),
        ("JPEG", "JPEG", "jpg"),
        ("GIF", "GIF", "gif"),
        ("BMP", "BMP", "bmp"),
        ("WEBP", "WebP", "webp"),
        ("TIFF", "TIFF", "tiff"),
    ],
)
def test_real_images_are_recognised(fmt: str, name: str, ext: str) -> None:
    kind = sniff(_image(fmt))
    assert kind is not None and (kind.modality, kind.name, kind.ext) == ("image", name, ext)
    assert sniff(_image(fmt), "audio") is None


@pytest.mark.parametrize(("fmt", "name"), [("WAV", "WAV"), ("FLAC", "FLAC"), ("OGG", "OGG")])
def test_real_audio_is_recognised(fmt: str, name: str) -> None:
    kind = sniff(_audio(fmt), "audio")
    assert kind is not None and kind.name == name and kind.mime.startswith("audio/")


def test_unknown_bytes_and_names() -> None:
    assert sniff(b"hello world, not media") is None
    assert sniff(b"") is None
    assert kind_names("image") == ["PNG", "JPEG", "GIF", "BMP", "WebP", "TIFF"]
    assert kind_names("audio") == ["WAV", "FLAC", "OGG", "AIFF", "MP3"]
