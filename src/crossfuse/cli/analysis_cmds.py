"""`crossfuse report` and `crossfuse compare`, plus the report writing shared with
`train` and `evaluate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from crossfuse.cli.common import err, out, parse_overrides
from crossfuse.errors import ConfigError

REPORT_FILE = "report.html"


def parse_corruptions(items: list[str] | None) -> dict[str, list[str]] | None:
    """`INPUT_OR_MODALITY=NAME[,NAME]` pairs → {input or modality: names}."""
    if not items:
        return None
    chosen: dict[str, list[str]] = {}
    for item in items:
        key, sep, names = item.partition("=")
        if not sep or not key or not names:
            raise ConfigError(f"--corruption expects INPUT=NAME[,NAME...], got {item!r}")
        chosen.setdefault(key, []).extend(n.strip() for n in names.split(",") if n.strip())
    return chosen


def parse_levels(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--levels expects comma-separated fractions, got {text!r}") from None


def write_report(predictor: Any, path: Path, table: Any = None, evaluation: Any = None) -> Path:
    """Render the HTML report of ``predictor`` to ``path``."""
    from crossfuse.report import render_report
    from crossfuse.report.collect import report_data

    data = report_data(predictor, table, evaluation, model_dir=path.parent)
    return render_report(data, path)


def status_progress():
    """A rich status line on stderr and a ``progress(message)`` callback updating it."""
    status = err.status("robustness…")

    def progress(message: str) -> None:
        status.update(f"robustness: {message}")

    return status, progress


def report(
    model: Annotated[Path, typer.Argument(help="Model directory.")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d", help="Labelled table to evaluate (default: validation metrics)."
        ),
    ] = None,
    robustness: Annotated[
        bool, typer.Option(help="Include robustness curves (needs --data).")
    ] = True,
    corruption: Annotated[
        list[str] | None,
        typer.Option(help="Only these corruptions: INPUT_OR_MODALITY=NAME[,NAME] (repeatable)."),
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file (default: MODEL/report.html).")
    ] = None,
) -> None:
    """Write a self-contained HTML report: data, curves, confusion, contributions, robustness."""
    from crossfuse.api import FusionPredictor
    from crossfuse.data.table import read_table

    predictor = FusionPredictor.load(model)
    table = evaluation = None
    if data is not None:
        table = read_table(data)
        evaluation = predictor.evaluate(table, ablate=True)
        if robustness:
            status, progress = status_progress()
            with status:
                evaluation["robustness"] = predictor.robustness(
                    table, corruptions=parse_corruptions(corruption), progress=progress
                )
    path = write_report(predictor, out_path or model / REPORT_FILE, table, evaluation)
    out.print(f"report written to [bold]{path}[/bold]")


def compare(
    train_table: Annotated[Path, typer.Option("--train", help="Training table.")],
    test_table: Annotated[Path, typer.Option("--test", help="Test table (labelled).")],
    label: Annotated[str, typer.Option("--label", "-l", help="Label column.")],
    fusions: Annotated[
        str, typer.Option(help="Comma-separated fusions to compare.")
    ] = "concat,gated,attention,tensor,low-rank,late,weighted",
    valid_table: Annotated[
        Path | None, typer.Option("--valid", help="Validation table (default: part of --train).")
    ] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Recipe YAML shared by every run.")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="fast, pretrained or finetune.")] = None,
    modality: Annotated[
        list[str] | None, typer.Option("--modality", "-m", help="Force COLUMN=MODALITY.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the recipe's epochs.")] = None,
    robustness: Annotated[bool, typer.Option(help="Also compute robustness curves.")] = True,
    corruption: Annotated[
        list[str] | None,
        typer.Option(help="Only these corruptions: INPUT_OR_MODALITY=NAME[,NAME] (repeatable)."),
    ] = None,
    save_models: Annotated[
        bool, typer.Option(help="Keep every model (with its report.html) under OUT/models.")
    ] = False,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the results.")] = Path(
        "compare"
    ),
) -> None:
    """Train each fusion with the same encoders and seeds; write a comparison table."""
    from rich.table import Table as RichTable

    from crossfuse.api import FusionPredictor
    from crossfuse.compare import CompareOptions, compare_fusions, markdown_table
    from crossfuse.recipe import Recipe, load_recipe
    from crossfuse.report.comparison import render_comparison

    recipe = load_recipe(config) if config else Recipe()
    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers, got {seeds!r}") from None
    options = CompareOptions(
        fusions=[f.strip() for f in fusions.split(",") if f.strip()],
        seeds=seed_list,
        robustness=robustness,
        corruptions=parse_corruptions(corruption),
        save_dir=out_dir / "models" if save_models else None,
        epochs=epochs,
    )
    overrides = {**recipe.modalities, **parse_overrides(modality)}

    def make(fusion: str) -> FusionPredictor:
        return FusionPredictor(
            label,
            fusion=fusion,
            config=recipe.config,
            modalities=overrides,
            preset=preset,
            progress=False,
        )

    status = err.status("compare…")
    with status:
        result = compare_fusions(
            label,
            train_table,
            test_table,
            options,
            valid=valid_table,
            make_predictor=make,
            progress=lambda m: status.update(f"training {m}"),
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "compare.md").write_text(markdown_table(result))
    render_comparison(result, out_dir / "compare.html")
    table = RichTable("fusion", result["metric"], "params", "train s", "ms/sample", "robust AUC")
    for r in result["summary"]:
        table.add_row(
            r["fusion"],
            f"{r['value']:.3f} ± {r['value_std']:.3f}",
            f"{r['parameters']:,}",
            f"{r['train_seconds']:.1f}",
            f"{r['infer_ms_per_sample']:.3f}",
            f"{r['robustness_auc']:.3f}" if "robustness_auc" in r else "–",
        )
    out.print(table)
    out.print(f"results written to {out_dir}/compare.{{json,md,html}}")
