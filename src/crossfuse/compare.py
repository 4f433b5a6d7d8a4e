"""Compare fusions: same data, encoders and seeds; metric, size, speed and robustness.

Each fusion is trained once per seed with otherwise identical settings, evaluated on the
test table, timed at prediction, and (optionally) put through the robustness curves.
When ``late`` is among the fusions, every other run also gets its effective robustness
against the late model of the same seed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossfuse.data.table import TableLike, read_table
from crossfuse.errors import ConfigError
from crossfuse.fusion.base import fusion_names
from crossfuse.robustness.curves import LEVELS, add_reference

REFERENCE = "late"


@dataclass
class CompareOptions:
    """What to compare and how."""

    fusions: list[str]  # fusion names, e.g. ["concat", "gated", "late"]
    seeds: list[int] = field(default_factory=lambda: [0])  # one run per fusion and seed
    robustness: bool = True  # also compute the robustness curves of every run
    corruptions: dict[str, list[str]] | None = None  # {input or modality: names}; None = all
    levels: list[float] = field(default_factory=lambda: list(LEVELS))
    save_dir: Path | None = None  # write every model (with its report.html) here
    epochs: int | None = None  # override the recipe's epochs

    def __post_init__(self) -> None:
        known = fusion_names()
        unknown = [f for f in self.fusions if f not in known]
        if not self.fusions or unknown:
            raise ConfigError(
                f"unknown fusion(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from: {', '.join(known)}"
            )
        if not self.seeds:
            raise ConfigError("compare needs at least one seed")


def compare_fusions(
    label: str,
    train: TableLike,
    test: TableLike,
    options: CompareOptions,
    *,
    valid: TableLike | None = None,
    make_predictor: Callable[[str], Any],
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train, evaluate and time every fusion × seed; returns runs and a summary per fusion.

    ``make_predictor(fusion)`` returns an unfitted :class:`FusionPredictor` configured
    for that fusion (so encoders and recipe are shared by construction).
    """
    test_table = read_table(test)
    runs: list[dict[str, Any]] = []
    curves: dict[tuple[str, int], dict[str, Any]] = {}
    for seed in options.seeds:
        for fusion in options.fusions:
            if progress is not None:
                progress(f"{fusion}, seed {seed}")
            predictor = make_predictor(fusion).fit(train, valid, seed=seed, epochs=options.epochs)
            run = _score(predictor, test_table, label, fusion, seed)
            if options.robustness:
                curves[fusion, seed] = predictor.robustness(
                    test_table, corruptions=options.corruptions, levels=options.levels, seed=seed
                )
                run["robustness_auc"] = _mean_auc(curves[fusion, seed])
            if options.save_dir is not None:
                run["model_dir"] = str(
                    _save(
                        predictor,
                        test_table,
                        curves.get((fusion, seed)),
                        options.save_dir / f"{fusion}-seed{seed}",
                    )
                )
            runs.append(run)
    if options.robustness and REFERENCE in options.fusions:
        for run in runs:
            result = curves[run["fusion"], run["seed"]]
            add_reference(result, curves[REFERENCE, run["seed"]], REFERENCE)
            run["effective_robustness"] = statistics.fmean(
                v for by in result["effective"].values() for v in by.values()
            )
    return {
        "label": label,
        "metric": runs[0]["metric"],
        "options": {
            "fusions": options.fusions,
            "seeds": options.seeds,
            "robustness": options.robustness,
            "levels": options.levels,
        },
        "runs": runs,
        "summary": summarise_runs(runs),
        "curves": {f"{f}/seed{s}": c for (f, s), c in curves.items()},
    }


def _score(predictor: Any, table: Any, label: str, fusion: str, seed: int) -> dict[str, Any]:
    metrics = predictor.evaluate(table)["tasks"][label]
    metric = "accuracy" if "accuracy" in metrics else "rmse"
    predictor.predict(table.df.head(8))  # warm-up: first-call allocations are not timed
    start = time.perf_counter()
    predictor.predict(table)
    infer = time.perf_counter() - start
    return {
        "fusion": fusion,
        "seed": seed,
        "metric": metric,
        "value": metrics[metric],
        "f1_macro": metrics.get("f1_macro"),
        "parameters": sum(p.numel() for p in predictor.model_.parameters()),
        "fusion_parameters": sum(p.numel() for p in predictor.model_.fusion.parameters()),
        "train_seconds": predictor.fit_summary_["train_seconds"],
        "epochs": predictor.fit_summary_["epochs"],
        "infer_ms_per_sample": 1000.0 * infer / max(len(table), 1),
    }


def _mean_auc(result: dict[str, Any]) -> float:
    return statistics.fmean(v for by in result["auc"].values() for v in by.values())


def _save(predictor: Any, table: Any, robustness: dict | None, path: Path) -> Path:
    from crossfuse.report import render_report
    from crossfuse.report.collect import report_data

    predictor.save(path)
    evaluation = predictor.evaluate(table, ablate=True)
    if robustness is not None:
        evaluation["robustness"] = robustness
    render_report(report_data(predictor, table, evaluation, model_dir=path), path / "report.html")
    return path


def summarise_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per fusion, in the order the fusions were given."""
    out = []
    for fusion in dict.fromkeys(r["fusion"] for r in runs):
        mine = [r for r in runs if r["fusion"] == fusion]
        row: dict[str, Any] = {"fusion": fusion, "seeds": len(mine)}
        for key in (
            "value",
            "f1_macro",
            "train_seconds",
            "infer_ms_per_sample",
            "robustness_auc",
            "effective_robustness",
        ):
            values = [r[key] for r in mine if r.get(key) is not None]
            if values:
                row[key] = statistics.fmean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["parameters"] = mine[0]["parameters"]
        row["fusion_parameters"] = mine[0]["fusion_parameters"]
        out.append(row)
    return out


def markdown_table(result: dict[str, Any]) -> str:
    """The summary as a Markdown table (metric mean ± std over seeds)."""
    metric = result["metric"]
    columns = [
        "fusion",
        metric,
        "macro-F1",
        "parameters (fusion)",
        "train s",
        "infer ms/sample",
        "robustness AUC",
        "effective vs late",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in result["summary"]:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["fusion"],
                    _pm(r, "value"),
                    _pm(r, "f1_macro"),
                    f"{r['parameters']:,} ({r['fusion_parameters']:,})",
                    f"{r.get('train_seconds', 0.0):.1f}",
                    f"{r.get('infer_ms_per_sample', 0.0):.3f}",
                    _pm(r, "robustness_auc"),
                    _pm(r, "effective_robustness", signed=True),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def _pm(row: dict[str, Any], key: str, signed: bool = False) -> str:
    if key not in row:
        return "–"
    fmt = "+.3f" if signed else ".3f"
    return f"{row[key]:{fmt}} ± {row[key + '_std']:.3f}"
