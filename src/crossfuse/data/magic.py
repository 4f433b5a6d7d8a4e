"""Media formats recognised by their first bytes (never by file name).

One table for every place that needs it: schema inference of extension-less files, the
server's upload check, the feedback store's file names and the report's audio players.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaKind:
    """One recognised format."""

    modality: str  # "image" | "audio"
    name: str  # what users are told, e.g. "PNG"
    ext: str  # file extension, e.g. "png"
    mime: str  # e.g. "image/png"
    offset: int  # where ``magic`` starts
    magic: bytes


KINDS: tuple[MediaKind, ...] = (
    MediaKind("image", "PNG", "png", "image/png", 0, b"\x89PNG\r\n\x1a\n"),
    MediaKind("image", "JPEG", "jpg", "image/jpeg", 0, b"\xff\xd8\xff"),
    MediaKind("image", "GIF", "gif", "image/gif", 0, b"GIF87a"),
    MediaKind("image", "GIF", "gif", "image/gif", 0, b"GIF89a"),
    MediaKind("image", "BMP", "bmp", "image/bmp", 0, b"BM"),
    MediaKind("image", "WebP", "webp", "image/webp", 8, b"WEBP"),
    MediaKind("image", "TIFF", "tiff", "image/tiff", 0, b"II*\x00"),
    MediaKind("image", "TIFF", "tiff", "image/tiff", 0, b"MM\x00*"),
    MediaKind("audio", "WAV", "wav", "audio/wav", 8, b"WAVE"),
    MediaKind("audio", "FLAC", "flac", "audio/flac", 0, b"fLaC"),
    MediaKind("audio", "OGG", "ogg", "audio/ogg", 0, b"OggS"),
    MediaKind("audio", "AIFF", "aiff", "audio/aiff", 8, b"AIFF"),
    MediaKind("audio", "MP3", "mp3", "audio/mpeg", 0, b"ID3"),
    MediaKind("audio", "MP3", "mp3", "audio/mpeg", 0, b"\xff\xfb"),
    MediaKind("audio", "MP3", "mp3", "audio/mpeg", 0, b"\xff\xf3"),
    MediaKind("audio", "MP3", "mp3", "audio/mpeg", 0, b"\xff\xf2"),
)


def sniff(data: bytes, modality: str | None = None) -> MediaKind | None:
    """The format of ``data`` (only among ``modality``'s formats when given), or None."""
    for kind in KINDS:
        if modality is not None and kind.modality != modality:
            continue
        if data[kind.offset : kind.offset + len(kind.magic)] == kind.magic:
            return kind
    return None


def kind_names(modality: str) -> list[str]:
    """The format names of a modality, e.g. ``["PNG", "JPEG", ...]``."""
    return list(dict.fromkeys(k.name for k in KINDS if k.modality == modality))
