"""`crossfuse embed / evaluate / predict`: thin wrappers over FusionPredictor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table as RichTable

from crossfuse.cli.common import out


def embed(
    train_table: Annotated[Path, typer.Option("--train", help="Training table (as for train).")],
    label: Annotated[list[str], typer.Option("--label", "-l", help="Label column(s).")],
    valid_table: Annotated[Path | None, typer.Option("--valid", help="Validation table.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Recipe YAML.")] = None,
    preset: Annotated[
        str | None, typer.Option(help="fast, pretrained or finetune.")
    ] = "pretrained",
    seed: Annotated[int | None, typer.Option(help="Random seed (as for train).")] = None,
) -> None:
    """Precompute the frozen encoders' features into the embedding cache.

    Run it with the same tables, recipe, preset and seed as a later `crossfuse train`:
    that training then reads every frozen encoder's output from the cache.
    """
    from crossfuse.api import FusionPredictor
    from crossfuse.recipe import Recipe, load_recipe

    recipe = load_recipe(config) if config else Recipe()
    predictor = FusionPredictor(
        label=label if len(label) > 1 else label[0],
        problem_type=recipe.problem_type,
        config=recipe.config,
        modalities=recipe.modalities,
        preset=preset,
    )
    summary = predictor.precompute(train_table, valid_table, seed=seed)
    table = RichTable("input", "encoded now", "already cached", title="Embedding cache")
    for col, counts in summary.items():
        table.add_row(col, str(counts["encoded"]), str(counts["reused"]))
    out.print(table)


def evaluate(
    model: Annotated[Path, typer.Argument(help="Model directory.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled table to evaluate on.")],
    ablate: Annotated[
        bool, typer.Option(help="Also score with each modality removed and alone.")
    ] = False,
    robustness: Annotated[
        bool,
        typer.Option(help="Corrupt each modality in 0-90% of rows and record the metric."),
    ] = False,
    corruption: Annotated[
        list[str] | None,
        typer.Option(help="Only these corruptions: INPUT_OR_MODALITY=NAME[,NAME] (repeatable)."),
    ] = None,
    levels: Annotated[
        str | None, typer.Option(help="Noise levels, e.g. 0,0.3,0.6,0.9 (default 0.0-0.9).")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="Model directory (e.g. late fusion) for the effective robustness."),
    ] = None,
    report: Annotated[
        bool, typer.Option(help="Write MODEL/report.html with these results.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print all metrics as JSON.")] = False,
    save: Annotated[
        Path | None, typer.Option("--save", help="Also write the metrics to this JSON file.")
    ] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            help="Read and score this many rows at a time (for tables larger than memory; "
            "same metrics; not with --robustness)."
        ),
    ] = None,
) -> None:
    """Evaluate a model directory on a labelled table (and write its report)."""
    from crossfuse.api import FusionPredictor
    from crossfuse.cli.analysis_cmds import (
        REPORT_FILE,
        parse_corruptions,
        parse_levels,
        status_progress,
        write_report,
    )
    from crossfuse.cli.common import err
    from crossfuse.cli.features_cmd import check_chunk_rows
    from crossfuse.data.table import read_table
    from crossfuse.errors import ConfigError

    check_chunk_rows(chunk_rows)
    if chunk_rows is not None and robustness:
        raise ConfigError("--robustness needs the whole table; drop --chunk-rows to use it")
    predictor = FusionPredictor.load(model)
    table = read_table(data) if chunk_rows is None else None
    result = predictor.evaluate(
        table if table is not None else data, ablate=ablate, chunk_rows=chunk_rows
    )
    if robustness:
        status, progress = status_progress()
        with status:
            result["robustness"] = predictor.robustness(
                table,
                corruptions=parse_corruptions(corruption),
                levels=parse_levels(levels),
                reference=FusionPredictor.load(reference) if reference else None,
                progress=progress,
            )
    if save:
        save.write_text(json.dumps(result, indent=2) + "\n")
    if report:
        write_report(predictor, model / REPORT_FILE, table, result)
        if table is None:
            err.print(
                f"{model / REPORT_FILE} has the streamed metrics but no misclassified examples "
                "or missing-cell counts: those need the whole table (drop --chunk-rows)",
                soft_wrap=True,
            )
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print_task_metrics(result, str(data))
    if ablate:
        print_ablation(result["ablation"])
    if robustness:
        print_robustness(result["robustness"])


def predict(
    model: Annotated[Path, typer.Argument(help="Model directory, or an ONNX export directory.")],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Table to predict (labels not needed).")
    ],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="CSV to write.")] = Path(
        "predictions.csv"
    ),
    proba: Annotated[bool, typer.Option(help="Add one probability column per class.")] = True,
    chunk_rows: Annotated[
        int, typer.Option(help="Rows read, predicted and written at a time (memory stays flat).")
    ] = 50_000,
) -> None:
    """Predict every row of a table and write a CSV (prediction, then class probabilities).

    The table is streamed in chunks (CSV, TSV, JSONL and Parquet are never read whole),
    so files larger than memory can be predicted.
    """
    from crossfuse.api import FusionPredictor
    from crossfuse.data.stream import iter_table
    from crossfuse.export.onnx_predictor import EXPORT_FILE, OnnxPredictor

    predictor: FusionPredictor | OnnxPredictor = (
        OnnxPredictor.load(model)
        if (model / EXPORT_FILE).is_file()
        else FusionPredictor.load(model)
    )
    rows = 0
    partial = out_path.with_name(f".{out_path.name}.partial")
    with partial.open("w", newline="") as f:
        for chunk in iter_table(data, chunk_rows=chunk_rows):
            frame = prediction_frame(predictor, chunk, proba)
            frame.to_csv(f, index=False, header=rows == 0)
            rows += len(frame)
    partial.replace(out_path)  # a killed run leaves no half-written predictions file
    out.print(f"{rows} predictions written to {out_path}")


def prediction_frame(predictor: Any, table: Any, proba: bool) -> Any:
    """Predicted label(s)/value(s), then ``p_<label>=<class>`` columns, for one table.

    When every label is a class, the labels are read off the probabilities (the class
    with the highest one, as ``predict`` does), so the model runs once, not twice.
    """
    import pandas as pd

    labels = predictor.preprocessor_.labels
    all_classes = all(e.task == "classification" for e in labels.values())
    probs = (
        predictor.predict_proba(table)
        if proba and any(e.task == "classification" for e in labels.values())
        else None
    )
    parts = probs if isinstance(probs, dict) else {next(iter(labels)): probs}
    if probs is not None and all_classes:
        frame = pd.DataFrame({f"predicted_{c}": p.idxmax(axis=1) for c, p in parts.items()})
    else:
        preds = predictor.predict(table)
        frame = (
            preds.to_frame(name=f"predicted_{preds.name}")
            if isinstance(preds, pd.Series)
            else preds.add_prefix("predicted_")
        )
    if probs is not None:
        for col, p in parts.items():
            frame = pd.concat([frame, p.add_prefix(f"p_{col}=")], axis=1)
    return frame


def print_task_metrics(result: dict[str, Any], title: str) -> None:
    table = RichTable("label", "metric", "value", title=f"Metrics on {title}")
    for task, metrics in result["tasks"].items():
        for key, value in metrics.items():
            if isinstance(value, float):
                table.add_row(task, key, f"{value:.4f}")
    out.print(table)


def print_ablation(ablation: dict[str, Any]) -> None:
    table = RichTable("setting", "input", "label", "metric", "value", "Δ vs all", title="Ablation")
    for kind, by_input in ablation.items():
        for name, by_task in by_input.items():
            for task, summary in by_task.items():
                for key in ("accuracy", "f1_macro", "rmse", "r2"):
                    if key in summary:
                        table.add_row(
                            kind,
                            name,
                            task,
                            key,
                            f"{summary[key]:.4f}",
                            f"{summary['delta'].get(key, 0.0):+.4f}",
                        )
    out.print(table)


def print_robustness(result: dict[str, Any]) -> None:
    table = RichTable(
        "input",
        "corruption",
        f"{result['metric']} at 0 → {result['levels'][-1]:.0%}",
        "AUC",
        title="Robustness (area under the metric-vs-noise curve)",
    )
    for name, by in result["curves"].items():
        for corruption, curve in by.items():
            table.add_row(
                name,
                corruption,
                f"{curve[0]:.3f} → {curve[-1]:.3f}",
                f"{result['auc'][name][corruption]:.3f}",
            )
    out.print(table)
