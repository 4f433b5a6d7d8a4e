"""The misclassified-examples section: one card per row with its text, image and audio.

Images are re-encoded as small PNG thumbnails (so a report with large photos stays
small) and audio is embedded as a data URI whose type is read from the bytes' header.
Media that cannot be decoded is named in a note instead of leaving a broken element.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from PIL import Image, UnidentifiedImageError

from crossfuse.data.magic import sniff
from crossfuse.report.html import data_uri, esc, fmt, note
from crossfuse.report.sections import NOTES

THUMB_PX = 256  # longest side of an embedded thumbnail


def audio_mime(data: bytes) -> str | None:
    """The MIME type of WAV / FLAC / Ogg / MP3 bytes, from their header; None if unknown."""
    kind = sniff(data, "audio")
    return kind.mime if kind is not None and kind.name != "AIFF" else None


def thumbnail_png(data: bytes, max_px: int = THUMB_PX) -> bytes | None:
    """Re-encode image bytes (any Pillow format) as a PNG at most ``max_px`` on a side.

    Returns None when the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode not in ("1", "L", "LA", "RGB", "RGBA"):
                img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
            img.thumbnail((max_px, max_px))
            out = io.BytesIO()
            img.save(out, format="PNG")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return out.getvalue()


def _image(column: str, data: bytes) -> str:
    png = thumbnail_png(data)
    if png is None:
        return note(f"image {column!r} could not be decoded")
    return (
        f'<figure><img class="thumb" src="{data_uri(png, "image/png")}" alt="{esc(column)}">'
        f"<figcaption>{esc(column)}</figcaption></figure>"
    )


def _audio(column: str, data: bytes) -> str:
    mime = audio_mime(data)
    if mime is None:
        return note(f"audio {column!r} is not WAV, FLAC, Ogg or MP3")
    return (
        f'<div class="col">{esc(column)}</div>'
        f'<audio controls preload="metadata" src="{data_uri(data, mime)}"></audio>'
    )


def card(example: Mapping[str, Any]) -> str:
    """One example as a card: row, true vs predicted label, media and texts."""
    prob = example.get("probability")
    prob_text = f" (p = {fmt(float(prob))})" if prob is not None else ""
    parts = [
        f"<h3>Row {esc(example.get('row', '?'))}</h3>",
        '<p class="verdict">true <span class="true">'
        f"{esc(example.get('true', '?'))}</span> → predicted "
        f'<span class="pred">{esc(example.get("predicted", "?"))}</span>{esc(prob_text)}</p>',
    ]
    images = example.get("image") or {}
    if images:
        parts.append('<div class="media">')
        parts.extend(_image(str(col), bytes(data)) for col, data in images.items())
        parts.append("</div>")
    for col, data in (example.get("audio") or {}).items():
        parts.append(_audio(str(col), bytes(data)))
    for col, text in (example.get("text") or {}).items():
        parts.append(f'<div class="col">{esc(col)}</div><blockquote>{esc(text)}</blockquote>')
    return f'<article class="card">{"".join(parts)}</article>'


def examples(data: Mapping[str, Any]) -> str:
    """Cards for the misclassified rows, or a note when there are none."""
    rows = data.get("examples")
    if not rows:
        return note(NOTES["examples"])
    intro = f"<p>{len(rows)} misclassified row{'s' if len(rows) != 1 else ''}.</p>"
    return intro + f'<div class="cards">{"".join(card(e) for e in rows)}</div>'
