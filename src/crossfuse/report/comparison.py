"""The fusion comparison page: the results table and every fusion's robustness curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from crossfuse.report.html import facts, figure, note, page, table
from crossfuse.report.plots import WIDTH_IN, figure_png
from crossfuse.report.render import write_html

EFFECTIVE_NOTE = (
    "Robustness AUC: the mean of the metric over the noise levels (area under the curve "
    "divided by the level range), averaged over inputs and corruptions. Effective vs late: "
    "(AUC − clean score) − (late's AUC − late's clean score); positive means the fusion "
    "loses less than late fusion as inputs degrade."
)


def mean_curves(result: Mapping[str, Any]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """{fusion: {input: {corruption: curve averaged over seeds}}}."""
    grouped: dict[str, dict[str, dict[str, list[Sequence[float]]]]] = {}
    for key, rob in result.get("curves", {}).items():
        fusion = key.rsplit("/seed", 1)[0]
        for name, by in rob["curves"].items():
            for corruption, curve in by.items():
                slot = grouped.setdefault(fusion, {}).setdefault(name, {})
                slot.setdefault(corruption, []).append(curve)
    return {
        f: {n: {c: np.mean(v, axis=0).tolist() for c, v in by.items()} for n, by in ins.items()}
        for f, ins in grouped.items()
    }


def curves_figure(
    curves: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    levels: Sequence[float],
    name: str,
    metric: str,
) -> bytes:
    """One panel per corruption of input ``name``: a line per fusion."""
    fusions = list(curves)
    corruptions = list(dict.fromkeys(c for f in fusions for c in curves[f].get(name, {})))
    ncols = min(len(corruptions), 3)
    nrows = -(-len(corruptions) // ncols)
    fig = Figure(figsize=(max(WIDTH_IN, 3.4 * ncols), 2.8 * nrows + 0.7))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    colour = {f: f"C{i % 10}" for i, f in enumerate(fusions)}
    for ax, corruption in zip(axes.flat, corruptions, strict=False):
        for fusion in fusions:
            values = curves[fusion].get(name, {}).get(corruption)
            if values is not None:
                ax.plot(levels, values, marker="o", ms=2.5, color=colour[fusion])
        ax.set_title(f"{name}: {corruption}", fontsize=10)
        ax.set_xlabel("share of rows corrupted")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric)
    for ax in list(axes.flat)[len(corruptions) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colour[f], marker="o", ms=3, label=f) for f in fusions]
    fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 8), frameon=False)
    fig.tight_layout(rect=(0.0, 0.1, 1.0, 1.0))
    return figure_png(fig)


def render_comparison(
    result: Mapping[str, Any], path: str | Path, *, title: str | None = None
) -> Path:
    """Write the self-contained comparison page for a :func:`crossfuse.compare` result."""
    metric = result["metric"]
    rows = [
        [
            r["fusion"],
            _pm(r, "value"),
            _pm(r, "f1_macro"),
            r["parameters"],
            r["fusion_parameters"],
            round(r.get("train_seconds", 0.0), 1),
            round(r.get("infer_ms_per_sample", 0.0), 3),
            _pm(r, "robustness_auc"),
            _pm(r, "effective_robustness"),
        ]
        for r in result["summary"]
    ]
    headers = [
        "fusion",
        metric,
        "macro-F1",
        "parameters",
        "fusion parameters",
        "train s",
        "infer ms/sample",
        "robustness AUC",
        "effective vs late",
    ]
    options = result.get("options", {})
    summary = (
        facts(
            [
                ("label", result.get("label", "")),
                ("fusions", ", ".join(options.get("fusions", []))),
                ("seeds", ", ".join(map(str, options.get("seeds", [])))),
            ]
        )
        + table(headers, rows)
        + note("Mean ± standard deviation over seeds. " + EFFECTIVE_NOTE)
    )
    sections = [("summary", "Comparison", summary)]
    curves = mean_curves(result)
    if curves:
        levels = options.get("levels") or next(iter(result["curves"].values()))["levels"]
        inputs = list(dict.fromkeys(n for f in curves.values() for n in f))
        body = "".join(
            figure(curves_figure(curves, levels, name, metric), f"robustness of {name}")
            for name in inputs
        )
        seeds = len(options.get("seeds", [])) or 1
        sections.append(
            (
                "robustness",
                "Robustness curves",
                note(f"Each line: one fusion, mean of {seeds} seed(s).") + body,
            )
        )
    else:
        sections.append(("robustness", "Robustness curves", note("robustness was not computed")))
    html = page(title or "crossfuse fusion comparison", "", sections, "Written by crossfuse.")
    return write_html(html, path)


def _pm(row: Mapping[str, Any], key: str) -> str:
    if key not in row:
        return "–"
    return f"{row[key]:.3f} ± {row.get(key + '_std', 0.0):.3f}"
