"""The registered corruptions: their default strengths, allowed ranges and operations.

Default strengths (override with keyword arguments):

- image ``gaussian-noise``: ``sigma=0.3`` — additive noise, std 0.3 × 255, clipped.
- image ``blur``: ``radius=0.025`` — Gaussian blur, 2.5 % of the shorter side, ≥ 1 px.
- image ``occlusion``: ``area=0.25`` — a random square of mid-grey (128), 25 % of the area.
- image ``contrast``: ``factor=0.3`` — blend toward the mean; 70 % of the contrast lost.
- audio ``white-noise``: ``snr_db=0.0`` — noise as loud as the clip (silent: RMS 0.01).
- audio ``dropout``: ``fraction=0.5, segment_ms=50`` — half the clip zeroed in 50 ms bits.
- audio ``time-shift``: ``min_shift=0.1, max_shift=0.4`` — ±10–40 % of the length.
- text ``char-swap`` / ``char-delete`` / ``keyboard-typo``: ``rate=0.1`` — 10 % edited.
- tabular ``drop`` (the value becomes None) and ``swap`` (another row's value): no options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossfuse.robustness import corruptions_media as media
from crossfuse.robustness import corruptions_text as text


@dataclass(frozen=True)
class Option:
    """A strength keyword: its default and the range it must lie in."""

    default: float
    rule: str  # shown in errors, e.g. "> 0"
    ok: Callable[[float], bool]


def _positive(default: float) -> Option:
    return Option(default, "> 0", lambda v: v > 0)


def _fraction(default: float) -> Option:
    return Option(default, "in (0, 1]", lambda v: 0 < v <= 1)


@dataclass(frozen=True)
class Entry:
    """Registry entry: how to describe, validate and apply one corruption."""

    template: str  # description, formatted with the effective strength
    options: dict[str, Option]
    op: Callable[..., Any]  # the modality's pure operation
    check: Callable[[dict[str, float]], str | None] = lambda p: None  # cross-option rule


def _shift_order(p: dict[str, float]) -> str | None:
    if p["min_shift"] > p["max_shift"]:
        return f"min_shift ({p['min_shift']}) must be <= max_shift ({p['max_shift']})"
    return None


def registry() -> dict[str, dict[str, Entry]]:
    """Every corruption by modality, default (most typical) first."""
    return {
        "image": {
            "gaussian-noise": Entry(
                "Gaussian pixel noise, σ = {sigma:g} of the range",
                {"sigma": _positive(0.3)},
                media.gaussian_noise,
            ),
            "blur": Entry(
                "Gaussian blur, radius = {radius:.1%} of the shorter side (≥ 1 px)",
                {"radius": _positive(0.025)},
                media.blur,
            ),
            "occlusion": Entry(
                "random mid-grey square covering {area:.0%} of the image",
                {"area": _fraction(0.25)},
                media.occlusion,
            ),
            "contrast": Entry(
                "contrast reduced to {factor:.0%} (blend toward the image mean, factor {factor:g})",
                {"factor": Option(0.3, "in [0, 1)", lambda v: 0 <= v < 1)},
                media.contrast,
            ),
        },
        "audio": {
            "white-noise": Entry(
                "additive white noise at SNR = {snr_db:g} dB",
                {"snr_db": Option(0.0, "a finite number of dB", lambda v: True)},
                media.white_noise,
            ),
            "dropout": Entry(
                "{fraction:.0%} of the clip zeroed in {segment_ms:g} ms segments",
                {"fraction": _fraction(0.5), "segment_ms": _positive(50.0)},
                media.dropout,
            ),
            "time-shift": Entry(
                "time shift by ±{min_shift:.0%}–{max_shift:.0%} of the length, zero-filled",
                {
                    "min_shift": Option(0.1, "in [0, 1)", lambda v: 0 <= v < 1),
                    "max_shift": Option(0.4, "in [0, 1)", lambda v: 0 <= v < 1),
                },
                media.time_shift,
                _shift_order,
            ),
        },
        "text": {
            "char-swap": Entry(
                "adjacent letters swapped, {rate:.0%} of characters",
                {"rate": _fraction(0.1)},
                text.char_swap,
            ),
            "char-delete": Entry(
                "{rate:.0%} of characters deleted", {"rate": _fraction(0.1)}, text.char_delete
            ),
            "keyboard-typo": Entry(
                "{rate:.0%} of letters replaced by a QWERTY neighbour",
                {"rate": _fraction(0.1)},
                text.keyboard_typo,
            ),
        },
        "tabular": {
            "drop": Entry("value dropped (set missing)", {}, _drop),
            "swap": Entry("value replaced by another row's value of the column", {}, _swap),
        },
    }


def _drop(cells: list[Any], index: int, rng: np.random.Generator, present: np.ndarray) -> Any:
    del cells, index, rng, present
    return None


def _swap(cells: list[Any], index: int, rng: np.random.Generator, present: np.ndarray) -> Any:
    """A value drawn uniformly from the column's other non-missing rows (kept if none).

    ``present`` holds the sorted indices of the non-missing cells, ``index`` among them.
    """
    if len(present) < 2:
        return cells[index]
    j = int(rng.integers(len(present) - 1))
    if j >= int(np.searchsorted(present, index)):
        j += 1  # skip the row itself
    return cells[int(present[j])]
