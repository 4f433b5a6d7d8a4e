"""Matplotlib figures for the HTML report, returned as PNG bytes.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly,
never through ``pyplot``, so rendering a report registers no global figures (nothing to
leak or close) and works on machines without a display.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

DPI = 100
WIDTH_IN = 7.0  # ~700 px at DPI
MAX_WIDTH_IN = 10.4  # the report's content width: wider images would be scaled down
BARS_PER_ROW = 25  # classes per row of the per-class bar chart
LOWER_IS_BETTER = frozenset({"rmse", "mse", "mae", "log_loss", "loss"})  # best = smallest
_BAR_COLOURS = ("#4c72b0", "#dd8452", "#55a868")  # precision, recall, F1


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes (``dpi=100``, tight bounding box) and free it.

    The ``Software`` metadata is dropped so the bytes are deterministic and carry no URL.
    """
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    fig.clear()
    return buf.getvalue()


def _label_size(n: int) -> float:
    """Tick-label font size that keeps ``n`` category labels legible (5–10 pt)."""
    return float(max(5.0, min(10.0, 300.0 / max(n, 1))))


def _series(values: Sequence[float | None]) -> np.ndarray:
    """Floats with ``None`` as NaN, so matplotlib leaves a gap instead of failing."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def training_curves(history: Sequence[Mapping[str, Any]], monitor: str) -> bytes:
    """Losses per epoch (left) and the validation ``monitor`` metric per epoch (right)."""
    epochs = np.array([int(h["epoch"]) for h in history])
    train = _series([h.get("train_loss") for h in history])
    valid = _series([h.get("valid_loss") for h in history])
    metric = _series([h.get("valid_metric") for h in history])
    has_metric = bool(np.isfinite(metric).any())
    fig = Figure(figsize=(WIDTH_IN if has_metric else WIDTH_IN * 0.6, 3.2))
    axes = fig.subplots(1, 2 if has_metric else 1, squeeze=False)[0]
    ax = axes[0]
    marker = "o" if len(epochs) <= 30 else None
    if np.isfinite(train).any():
        ax.plot(epochs, train, marker=marker, ms=3, label="train")
    if np.isfinite(valid).any():
        ax.plot(epochs, valid, marker=marker, ms=3, label="valid")
    ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    if ax.lines:
        ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    if has_metric:
        ax2 = axes[1]
        ax2.plot(epochs, metric, marker=marker, ms=3, color="#55a868")
        finite = np.where(np.isfinite(metric))[0]
        lower = monitor.lower() in LOWER_IS_BETTER
        best = finite[np.argmin(metric[finite]) if lower else np.argmax(metric[finite])]
        ax2.plot([epochs[best]], [metric[best]], "*", ms=12, color="#c44e52", label="best")
        ax2.set(xlabel="epoch", ylabel=monitor, title=f"Validation {monitor}")
        ax2.legend(frameon=False)
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def confusion_heatmap(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """Confusion matrix (rows true, columns predicted) coloured by each true row's share.

    Counts are written in the cells while they stay legible (up to 25 classes).
    """
    counts = np.asarray(matrix, dtype=float)  # (C, C)
    n = len(classes)
    totals = counts.sum(axis=1, keepdims=True)  # (C, 1)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    side = min(MAX_WIDTH_IN - 1.4, max(5.0, 0.2 * n + 2.5))
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    size = _label_size(n)
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=90 if n > 6 else 0, fontsize=size)
    ax.set_yticks(range(n), [str(c) for c in classes], fontsize=size)
    ax.set(xlabel="predicted", ylabel="true")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                colour = "white" if share[i, j] > 0.5 else "black"
                text = str(int(counts[i, j]))
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=size)
    fig.tight_layout()
    return figure_png(fig)


def per_class_bars(per_class: Mapping[str, Mapping[str, float]]) -> bytes:
    """Grouped bars of precision, recall and F1 for every class.

    Many classes wrap onto several rows of at most ``BARS_PER_ROW`` so labels stay legible.
    """
    classes = list(per_class)
    nrows = max(1, math.ceil(len(classes) / BARS_PER_ROW))
    per_row = math.ceil(len(classes) / nrows)
    width = 0.27
    size = _label_size(per_row)
    fig = Figure(figsize=(min(MAX_WIDTH_IN, max(WIDTH_IN, 0.36 * per_row + 1.5)), 3.0 * nrows))
    axes = fig.subplots(nrows, 1, squeeze=False)[:, 0]
    for row, ax in enumerate(axes):
        chunk = classes[row * per_row : (row + 1) * per_row]
        x = np.arange(len(chunk))
        for k, (name, colour) in enumerate(
            zip(("precision", "recall", "f1"), _BAR_COLOURS, strict=True)
        ):
            values = [float(per_class[c].get(name, 0.0) or 0.0) for c in chunk]
            ax.bar(x + (k - 1) * width, values, width, label=name, color=colour)
        rotate = 90 if per_row > 8 else 0
        ax.set_xticks(x, [str(c) for c in chunk], rotation=rotate, fontsize=size)
        ax.set_xlim(-0.6, per_row - 0.4)
        ax.set_ylim(0.0, 1.05)
        ax.set_ylabel("score")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(frameon=False, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return figure_png(fig)


def contribution_bars(contribution: Mapping[str, Any]) -> bytes:
    """Bars of the metric with all inputs, without each input and with only each input.

    A dashed horizontal line marks the full model so a drop or gain reads at a glance.
    """
    metric = str(contribution.get("metric", "metric"))
    full = float(contribution["full"])
    without = {str(k): float(v) for k, v in dict(contribution.get("without") or {}).items()}
    only = {str(k): float(v) for k, v in dict(contribution.get("only") or {}).items()}
    labels = ["all inputs"] + [f"without {k}" for k in without] + [f"only {k}" for k in only]
    values = [full, *without.values(), *only.values()]
    colours = ["#4c72b0"] + ["#dd8452"] * len(without) + ["#55a868"] * len(only)
    n = len(labels)
    fig = Figure(figsize=(min(MAX_WIDTH_IN, max(WIDTH_IN * 0.8, 0.7 * n + 1.5)), 3.4))
    ax = fig.subplots()
    bars = ax.bar(range(n), values, color=colours)
    ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    ax.axhline(full, color="#333333", linestyle="--", linewidth=1)
    ax.set_xticks(range(n), labels, rotation=30 if n > 4 else 0, ha="right" if n > 4 else "center")
    finite = [v for v in values if math.isfinite(v)] or [0.0, 1.0]
    low, top = min(0.0, min(finite)), max(finite)
    ax.set_ylim(low, top + 0.15 * (top - low) if top > low else low + 1.0)
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def robustness_curves(robustness: Mapping[str, Any]) -> bytes:
    """One panel per input: the metric against noise level, a line per corruption.

    A dashed line of the same colour shows the reference model (late fusion) when given.
    """
    levels = [float(v) for v in robustness["levels"]]
    curves: Mapping[str, Mapping[str, Sequence[float]]] = robustness["curves"]
    reference = robustness.get("reference") or {}
    ref_curves: Mapping[str, Mapping[str, Sequence[float]]] = reference.get("curves") or {}
    ref_name = str(reference.get("name", "reference"))
    metric = str(robustness.get("metric", "metric"))
    inputs = list(curves)
    corruptions = sorted({c for per_input in curves.values() for c in per_input})
    palette = [f"C{i % 10}" for i in range(len(corruptions))]
    colour = dict(zip(corruptions, palette, strict=True))
    ncols = min(len(inputs), 3)
    nrows = math.ceil(len(inputs) / ncols)
    fig = Figure(figsize=(max(WIDTH_IN, 3.6 * ncols), 3.0 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, inputs, strict=False):
        for corruption, values in curves[name].items():
            ax.plot(levels, _series(values), marker="o", ms=3, color=colour[corruption])
            ref = ref_curves.get(name, {}).get(corruption)
            if ref is not None:
                ax.plot(levels, _series(ref), linestyle="--", color=colour[corruption], alpha=0.8)
        ax.set_title(str(name))
        ax.set_xlabel("noise level")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric)
    for ax in list(axes.flat)[len(inputs) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colour[c], marker="o", ms=3, label=c) for c in corruptions]
    if ref_curves:
        handles.append(Line2D([], [], color="#555555", linestyle="--", label=f"{ref_name} (ref.)"))
    fig.legend(
        handles=handles,
        loc="lower center",
        ncols=min(len(handles), 5),
        frameon=False,
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.tight_layout(rect=(0.0, 0.08 + 0.04 * (len(handles) > 5), 1.0, 1.0))
    return figure_png(fig)
