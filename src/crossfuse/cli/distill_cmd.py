"""`crossfuse distill`: train a small student model from a trained teacher model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from crossfuse.cli.common import out, parse_overrides
from crossfuse.errors import ConfigError


def distill(
    teacher: Annotated[Path, typer.Option("--teacher", "-t", help="Teacher model directory.")],
    train_table: Annotated[
        Path, typer.Option("--train", help="Training table (rows with an empty label are used).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Student model directory.")],
    valid_table: Annotated[
        Path | None,
        typer.Option("--valid", help="Labelled validation table (default: part of --train)."),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Label column (default: the teacher's label)."),
    ] = None,
    student: Annotated[
        str | None,
        typer.Option(
            help="The student: a preset (fast, pretrained, finetune) or a recipe YAML file."
        ),
    ] = None,
    modality: Annotated[
        list[str] | None,
        typer.Option("--modality", "-m", help="Force COLUMN=MODALITY (e.g. photo=ignore)."),
    ] = None,
    fusion: Annotated[str | None, typer.Option(help="The student's fusion.")] = None,
    temperature: Annotated[float, typer.Option(help="Softening temperature T.")] = 4.0,
    alpha: Annotated[
        float, typer.Option(help="Weight of the hard labels (1 - alpha: the teacher).")
    ] = 0.5,
    feature_weight: Annotated[
        float, typer.Option(help="Weight of matching the teacher's fused embedding (0: off).")
    ] = 0.0,
    modality_feature_weight: Annotated[
        float, typer.Option(help="Weight of matching each shared input's embedding (0: off).")
    ] = 0.0,
    relational_weight: Annotated[
        float, typer.Option(help="Weight of relational KD (distances and angles; 0: off).")
    ] = 0.0,
    feature_kind: Annotated[str, typer.Option(help="mse or cosine.")] = "mse",
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    time_limit: Annotated[
        float | None, typer.Option(help="Stop training after this many seconds.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Distil a trained teacher into a (smaller, possibly fewer-input) student model."""
    from crossfuse.api import FusionPredictor
    from crossfuse.cli.analysis_cmds import REPORT_FILE, write_report
    from crossfuse.cli.model_cmds import print_task_metrics
    from crossfuse.distill import DistillConfig
    from crossfuse.presets import PRESETS
    from crossfuse.recipe import Recipe, load_recipe

    preset, recipe = None, Recipe()
    if student in PRESETS:
        preset = student
    elif student is not None:
        if not Path(student).is_file():
            raise ConfigError(
                f"--student must be a preset ({', '.join(PRESETS)}) or a recipe YAML file; "
                f"{student!r} is neither"
            )
        recipe = load_recipe(student)
    teacher_model = FusionPredictor.load(teacher)
    labels = label or recipe.label or teacher_model.label
    settings = DistillConfig(
        temperature=temperature,
        alpha=alpha,
        feature_weight=feature_weight,
        feature_kind=feature_kind,
        modality_feature_weight=modality_feature_weight,
        relational_weight=relational_weight,
    )
    predictor = FusionPredictor(
        label=labels[0] if isinstance(labels, list) and len(labels) == 1 else labels,
        problem_type=recipe.problem_type,
        fusion=fusion,
        config=recipe.config,
        modalities={**recipe.modalities, **parse_overrides(modality)},
        preset=preset,
        progress=progress,
    )
    predictor.distill(
        teacher_model,
        train_table,
        valid_table or recipe.valid_table,
        config=settings,
        epochs=epochs,
        time_limit=time_limit,
        seed=seed,
    )
    predictor.save(out_dir)
    write_report(predictor, out_dir / REPORT_FILE)
    summary = {k: v for k, v in predictor.fit_summary_.items() if k != "history"}
    out.print(f"student written to [bold]{out_dir}[/bold]; fit: {json.dumps(summary)}")
    print_task_metrics(predictor.metrics_["valid"], "validation")
