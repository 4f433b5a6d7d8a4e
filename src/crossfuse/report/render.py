"""Render the report data dict to one self-contained HTML file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from crossfuse.atomic import atomic_write
from crossfuse.errors import ConfigError
from crossfuse.report import analysis, examples, sections
from crossfuse.report.html import page

Builder = Callable[[Mapping[str, Any]], str]

# (section id, heading, data key named in errors, builder), in page order.
SECTIONS: tuple[tuple[str, str, str, Builder], ...] = (
    ("summary", "Summary", "summary", sections.summary),
    ("schema", "Data schema", "schema", sections.schema),
    ("training", "Training", "history", sections.training),
    ("confusion", "Confusion matrix", "metrics", sections.confusion),
    ("per-class", "Per-class scores", "metrics", sections.per_class),
    ("contributions", "Modality contributions", "contributions", analysis.contributions),
    ("robustness", "Robustness to corrupted inputs", "robustness", analysis.robustness),
    ("examples", "Misclassified examples", "examples", examples.examples),
)


def build_html(data: Mapping[str, Any]) -> str:
    """The report page as a string (see :func:`render_report` for the data it reads)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"report data must be a dict, got {type(data).__name__}")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ConfigError(f"report data needs a non-empty 'title' string, got {title!r}")
    body = []
    for section_id, heading, key, build in SECTIONS:
        try:
            body.append((section_id, heading, build(data)))
        except ConfigError:
            raise
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"report data {key!r} is malformed for section {section_id!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    meta = " · ".join(
        f"{label} {data[k]}"
        for label, k in (("created", "created"), ("crossfuse", "version"), ("model", "model_dir"))
        if data.get(k)
    )
    version = f" {data['version']}" if data.get("version") else ""
    footer = f"Written by crossfuse{version}. Self-contained: readable offline."
    return page(title, meta, body, footer)


def render_report(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write the self-contained HTML report for ``data`` to ``path`` and return the path.

    Plots are embedded as base64 PNG and audio as base64 WAV data URIs, so the single
    file reads offline. Only ``title`` is required: a section whose data is absent shows
    a one-line note instead. The file is written to a temporary sibling and renamed, so
    a reader never sees half a report.

    Raises:
        ConfigError: ``title`` is missing or a section's data has the wrong shape.
    """
    return write_html(build_html(data), path)


def write_html(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling and a rename (atomic)."""
    return atomic_write(path, text)
