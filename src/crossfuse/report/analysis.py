"""Report sections about how the model uses its inputs: modality contributions and
robustness to corrupted inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crossfuse.errors import ConfigError
from crossfuse.report import plots
from crossfuse.report.html import esc, facts, figure, fmt, note, table
from crossfuse.report.sections import NOTES


def contributions(data: Mapping[str, Any]) -> str:
    """Per task: bars of full vs without-each vs only-each input, and the same as a table."""
    tasks = data.get("contributions")
    if not tasks:
        return note(NOTES["contributions"])
    parts = []
    for task, c in tasks.items():
        if "full" not in c:
            raise ConfigError(f"report data contributions[{task!r}] needs 'full' (the metric)")
        metric = str(c.get("metric", "metric"))
        if len(tasks) > 1:
            parts.append(f"<h3>Task {esc(task)}</h3>")
        parts.append(
            f"<p>The {esc(metric)} of the model with all inputs, with each input removed "
            "(without) and with each input alone (only); the dashed line marks all inputs.</p>"
        )
        parts.append(figure(plots.contribution_bars(c), f"{metric} by input set for {task}"))
        full = float(c["full"])
        rows: list[list[Any]] = [["all inputs", full, 0.0]]
        for kind in ("without", "only"):
            for name, value in (c.get(kind) or {}).items():
                rows.append([f"{kind} {name}", float(value), float(value) - full])
        parts.append(table(["inputs", metric, "change vs all"], rows))
    return "".join(parts)


def _check_curves(curves: Mapping[str, Any], levels: list[float], where: str) -> None:
    for name, per_corruption in curves.items():
        for corruption, values in per_corruption.items():
            if len(values) != len(levels):
                raise ConfigError(
                    f"report data {where}[{name!r}][{corruption!r}] has {len(values)} values "
                    f"but robustness 'levels' has {len(levels)}"
                )


def robustness(data: Mapping[str, Any]) -> str:
    """Metric-vs-noise curves per input (late-fusion reference dashed) and an AUC table."""
    rob = data.get("robustness")
    if not rob:
        return note(NOTES["robustness"])
    if not rob.get("levels") or not rob.get("curves"):
        raise ConfigError("report data 'robustness' needs 'levels' and 'curves'")
    levels = [float(v) for v in rob["levels"]]
    _check_curves(rob["curves"], levels, "robustness curves")
    reference = rob.get("reference") or {}
    if reference.get("curves"):
        _check_curves(reference["curves"], levels, "robustness reference curves")
    metric = str(rob.get("metric", "metric"))
    pairs = [
        ("metric", metric),
        ("task", rob.get("task")),
        ("noise levels", f"{fmt(levels[0])} to {fmt(levels[-1])} ({len(levels)} steps)"),
        ("reference", reference.get("name") if reference.get("curves") else None),
    ]
    parts = [
        facts([(k, v) for k, v in pairs if v is not None]),
        figure(plots.robustness_curves(rob), f"{metric} against noise level per input"),
    ]
    auc = rob.get("auc") or {}
    effective = rob.get("effective")
    headers = ["input", "corruption", "AUC"] + (["effective robustness"] if effective else [])
    rows = []
    for name, per_corruption in rob["curves"].items():
        for corruption in per_corruption:
            row = [name, corruption, auc.get(name, {}).get(corruption)]
            if effective:
                row.append(effective.get(name, {}).get(corruption))
            rows.append(row)
    explain = (
        "AUC is the area under each curve divided by the range of noise levels (the mean "
        "score over the levels): higher means the model keeps its score as the input degrades."
    )
    if effective:
        ref = reference.get("name", "the reference")
        explain += (
            f" Effective robustness is (AUC − clean score) − (the same for {ref}): positive "
            f"means this model loses less than {ref} does, whatever its clean score."
        )
    parts.append(f"<p>{esc(explain)}</p>")
    parts.append(table(headers, rows))
    descriptions = rob.get("descriptions") or {}
    if descriptions:
        parts.append("<h3>Corruptions</h3>")
        parts.append(facts([(k, v) for k, v in descriptions.items()]))
    return "".join(parts)
