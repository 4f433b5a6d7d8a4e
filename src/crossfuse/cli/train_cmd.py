"""`crossfuse train`: fit a model from flags or a recipe, on one process or with DDP,
and resume an interrupted run from its run directory."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from crossfuse.cli.common import out, parse_overrides
from crossfuse.errors import ConfigError

RUN_FILE = "run.json"  # the arguments of a run, so `--resume RUN` needs nothing else


def train(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Recipe YAML (see configs/).")
    ] = None,
    train_table: Annotated[Path | None, typer.Option("--train", help="Training table.")] = None,
    valid_table: Annotated[
        Path | None,
        typer.Option("--valid", help="Validation table (default: a stratified part of --train)."),
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Label column (repeat for multitask).")
    ] = None,
    fusion: Annotated[str | None, typer.Option(help="Fusion: weighted, concat, late, ...")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    time_limit: Annotated[
        float | None, typer.Option(help="Stop training after this many seconds.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    modality: Annotated[
        list[str] | None, typer.Option("--modality", "-m", help="Force COLUMN=MODALITY.")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="classification or regression (default: inferred).")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")] = Path(
        "model"
    ),
    preset: Annotated[
        str | None,
        typer.Option(help="fast, pretrained or finetune (the recipe is merged over it)."),
    ] = None,
    devices: Annotated[
        int | None, typer.Option(help="Processes per node (GPUs, or CPU processes); >1 is DDP.")
    ] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Machines in a multi-node job.")] = None,
    strategy: Annotated[str | None, typer.Option(help="auto or ddp.")] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Keep a checkpoint after every epoch here, for --resume."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the interrupted run in this run directory (no other flags)."),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            min=1, help="With --run-dir: also checkpoint every this many steps inside an epoch."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a fused model and write its model directory.

    With --devices N (and --num-nodes M) Lightning's DDP trains on N×M processes;
    only rank 0 writes the model directory. With --run-dir every epoch (and with
    --checkpoint-every N, every N steps) is checkpointed, and
    `crossfuse train --resume RUN` continues a killed run from its last checkpoint.
    """
    if resume is not None:
        _train(**_load_run(resume), progress=progress, resume=True)
        return
    args = {
        "config": config,
        "train_table": train_table,
        "valid_table": valid_table,
        "label": label,
        "fusion": fusion,
        "epochs": epochs,
        "time_limit": time_limit,
        "seed": seed,
        "modality": modality,
        "task": task,
        "out_dir": out_dir,
        "preset": preset,
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": strategy,
        "run_dir": run_dir,
        "checkpoint_every": checkpoint_every,
        "progress": progress,
    }
    if run_dir is not None and _env_rank() == 0:
        _save_run(run_dir, args)
    _train(**args, resume=False)


def _train(
    *,
    config: Path | None,
    train_table: Path | None,
    valid_table: Path | None,
    label: list[str] | None,
    fusion: str | None,
    epochs: int | None,
    time_limit: float | None,
    seed: int | None,
    modality: list[str] | None,
    task: str | None,
    out_dir: Path,
    preset: str | None,
    devices: int | None,
    num_nodes: int | None,
    strategy: str | None,
    run_dir: Path | None,
    progress: bool,
    resume: bool,
    checkpoint_every: int | None = None,
) -> None:
    from crossfuse.api import FusionPredictor
    from crossfuse.cli.analysis_cmds import REPORT_FILE, write_report
    from crossfuse.cli.model_cmds import print_task_metrics
    from crossfuse.recipe import Recipe, load_recipe

    recipe = load_recipe(config) if config else Recipe()
    labels = label or recipe.label
    tables = train_table or recipe.train_table
    if not labels:
        raise ConfigError("give the label column with --label (or `label:` in the recipe)")
    if tables is None:
        raise ConfigError("give the training table with --train (or `train_table:` in the recipe)")
    predictor = FusionPredictor(
        label=labels if isinstance(labels, str) or len(labels) > 1 else labels[0],
        problem_type=task or recipe.problem_type,
        fusion=fusion,
        config=recipe.config,
        modalities={**recipe.modalities, **parse_overrides(modality)},
        preset=preset,
        progress=progress,
    )
    predictor.fit(
        tables,
        valid_table or recipe.valid_table,
        epochs=epochs,
        time_limit=time_limit,
        seed=seed,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        run_dir=run_dir,
        resume=resume,
        checkpoint_every=checkpoint_every,
    )
    if not predictor.is_global_zero:
        return  # the other DDP ranks trained the same weights; rank 0 writes them
    predictor.save(out_dir)
    write_report(predictor, out_dir / REPORT_FILE)
    out.print(f"model written to [bold]{out_dir}[/bold]; fit: {json.dumps(predictor.fit_summary_)}")
    print_task_metrics(predictor.metrics_["valid"], "validation")


def _env_rank() -> int:
    """This process's global rank as the launcher set it (torchrun, SLURM, Lightning)."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name):
            return int(os.environ[name])
    return 0


def _save_run(run_dir: Path, args: dict[str, Any]) -> None:
    from crossfuse.atomic import atomic_write

    plain = {
        key: str(value.resolve()) if isinstance(value, Path) else value
        for key, value in args.items()
        if key != "progress"
    }
    atomic_write(run_dir / RUN_FILE, json.dumps(plain, indent=2))


def _load_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} is not a run directory ({RUN_FILE} is missing); "
            "start the run with `crossfuse train ... --run-dir DIR`"
        )
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    keys = [k for k in inspect.signature(_train).parameters if k not in ("progress", "resume")]
    unknown = sorted(set(saved) - set(keys)) if isinstance(saved, dict) else ["(not a mapping)"]
    if unknown:
        raise ConfigError(f"{path}: unknown entry {unknown[0]!r}; was it written by crossfuse?")
    args = {**dict.fromkeys(keys), "out_dir": "model", **saved}
    for key in ("config", "train_table", "valid_table", "out_dir", "run_dir"):
        if args.get(key) is not None:
            args[key] = Path(args[key])
    return args
