"""Registry of per-modality corruptions and :func:`corrupt_column`, which applies one.

A corruption turns a table cell into a damaged cell that the column processors still
read: images become uint8 arrays, audio ``(float32 (channels, n), sample_rate)`` tuples,
text a string, tabular cells a new value. Each selected row draws from its own
generator seeded with ``(seed, row index)``, so a row is corrupted the same way whichever
other rows are selected (nested noise levels stay consistent).

The corruptions themselves and their default strengths are listed in
:mod:`crossfuse.robustness.corruptions_registry`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossfuse.data.audio_io import load_audio_cell
from crossfuse.data.media import is_missing
from crossfuse.errors import CellError, ConfigError
from crossfuse.robustness import corruptions_media as media
from crossfuse.robustness.corruptions_registry import Entry, registry

MODALITIES = ("image", "audio", "text", "tabular")


@dataclass(frozen=True)
class Corruption:
    """One registered corruption, as shown in reports."""

    name: str  # e.g. "gaussian-noise"
    modality: str  # "image" | "audio" | "text" | "tabular"
    description: str  # one line, with its strength
    strength: Mapping[str, float] = field(default_factory=dict, hash=False)  # effective options


def corruption_names(modality: str) -> list[str]:
    """The corruptions registered for ``modality``, default (most typical) first."""
    return list(_modality(modality))


def get_corruption(name: str, modality: str, **strength: float) -> Corruption:
    """Look up a corruption; ``strength`` overrides its defaults in the description.

    Raises:
        ConfigError: unknown modality or name (the message lists the valid names), or an
            unknown or out-of-range strength option.
    """
    entry = _entry(name, modality)
    params = _params(name, entry, strength)
    return Corruption(name, modality, entry.template.format(**params), params)


def corrupt_column(
    cells: Sequence[Any],
    name: str,
    modality: str,
    rows: np.ndarray,
    *,
    base_dir: Path | None,
    seed: int,
    **strength: float,
) -> list[Any]:
    """Corrupt the cells of one column where ``rows`` is True.

    Unselected rows are returned as the same objects. Selected media cells that cannot
    be decoded are left unchanged (the dataset reports them), and missing text/tabular
    cells stay missing.

    Args:
        cells: the column, one cell per row.
        name: a corruption from :func:`corruption_names` for ``modality``.
        modality: "image", "audio", "text" or "tabular".
        rows: boolean mask, one entry per cell.
        base_dir: folder that relative media paths are resolved against.
        seed: non-negative integer; row ``i`` uses a generator seeded with ``(seed, i)``.
        **strength: overrides of the corruption's default strength.

    Raises:
        ConfigError: unknown corruption or option, a bad ``rows`` mask or ``seed``.
    """
    entry = _entry(name, modality)
    params = _params(name, entry, strength)
    cells = list(cells)
    mask = _mask(rows, len(cells))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    out = list(cells)
    selected = np.flatnonzero(mask)
    present = np.empty(0, dtype=np.int64)  # non-missing rows: the pool of tabular swap
    if modality == "tabular" and len(selected):
        present = np.array([i for i, c in enumerate(cells) if not is_missing(c)], dtype=np.int64)
    for i in selected:
        i = int(i)
        rng = np.random.default_rng([int(seed), i])
        out[i] = _apply(modality, entry.op, cells, i, rng, base_dir, params, present)
    return out


def _apply(
    modality: str,
    op: Callable[..., Any],
    cells: list[Any],
    i: int,
    rng: np.random.Generator,
    base_dir: Path | None,
    params: dict[str, float],
    present: np.ndarray,
) -> Any:
    """Corrupt cell ``i``; undecodable media and missing text/tabular cells come back as is."""
    cell = cells[i]
    if modality == "image":
        try:
            pixels = media.load_image_pixels(cell, base_dir)  # (H, W) or (H, W, 3)
        except CellError:
            return cell
        return op(pixels, rng, **params)
    if modality == "audio":
        try:
            samples, sr = load_audio_cell(cell, base_dir)  # (C, n)
        except CellError:
            return cell
        return op(samples, sr, rng, **params), sr
    if is_missing(cell):
        return cell
    if modality == "text":
        return op(str(cell), rng, **params)
    return op(cells, i, rng, present)


def _modality(modality: str) -> dict[str, Entry]:
    entries = registry()
    if modality not in entries:
        raise ConfigError(
            f"unknown modality {modality!r} for corruptions; valid: {', '.join(MODALITIES)}"
        )
    return entries[modality]


def _entry(name: str, modality: str) -> Entry:
    entries = _modality(modality)
    if name in entries:
        return entries[name]
    owner = next((m for m, e in registry().items() if name in e), None)
    hint = f" (it is {'an' if owner[0] in 'aeiou' else 'a'} {owner} corruption)" if owner else ""
    raise ConfigError(
        f"unknown {modality} corruption {name!r}{hint}; "
        f"valid {modality} corruptions: {', '.join(entries)}"
    )


def _params(name: str, entry: Entry, strength: Mapping[str, Any]) -> dict[str, float]:
    """Defaults overridden by ``strength``, every value checked against its rule."""
    unknown = sorted(set(strength) - set(entry.options))
    if unknown:
        valid = ", ".join(entry.options) if entry.options else "none (it takes no options)"
        raise ConfigError(
            f"corruption {name!r} has no strength option {unknown[0]!r}; valid options: {valid}"
        )
    params = {key: opt.default for key, opt in entry.options.items()}
    for key, value in strength.items():
        rule = entry.options[key]
        number = isinstance(value, (int, float, np.integer, np.floating))
        if isinstance(value, bool) or not number or not math.isfinite(value) or not rule.ok(value):
            raise ConfigError(f"corruption {name!r}: {key} must be {rule.rule}, got {value!r}")
        params[key] = float(value)
    problem = entry.check(params)
    if problem:
        raise ConfigError(f"corruption {name!r}: {problem}")
    return params


def _mask(rows: Any, n: int) -> np.ndarray:
    mask = np.asarray(rows)
    if mask.dtype != np.bool_ or mask.shape != (n,):
        raise ConfigError(
            f"rows must be a boolean array with one entry per cell ({n}), "
            f"got {mask.dtype} of shape {mask.shape}"
        )
    return mask
