"""`crossfuse feedback list/export`, `crossfuse refine` and `crossfuse rollback`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table as RichTable

from crossfuse.cli.common import out
from crossfuse.errors import ConfigError

feedback_app = typer.Typer(
    help="Inspect and export the feedback users sent on a served model.",
    no_args_is_help=True,
)

ModelArg = Annotated[Path, typer.Argument(help="Model directory.")]
DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="Feedback database (default: MODEL/feedback/feedback.sqlite)."),
]
EXPORT_FORMATS = (".csv", ".parquet", ".jsonl")


def _open_store(model: Path, db: Path | None):
    """The model's feedback store; an error (not a new empty file) when it does not exist."""
    from crossfuse.feedback.store import FeedbackStore, default_store_path

    if db is None:
        path = default_store_path(model)
        if not path.is_file():
            raise ConfigError(f"no feedback for {model}: {path} does not exist (give --db)")
        return FeedbackStore.for_model(model)
    if not db.is_file():
        raise ConfigError(f"feedback database {db} not found")
    return FeedbackStore(db)


def _label_column(model: Path) -> str:
    """The model's (first) label column, read from its metadata only."""
    from crossfuse.model_dir import META_FILE
    from crossfuse.versions import resolve_model_dir

    meta_path = resolve_model_dir(model) / META_FILE
    if not meta_path.is_file():
        raise ConfigError(f"{model} is not a crossfuse model directory (no {META_FILE})")
    label = json.loads(meta_path.read_text())["label"]
    return label if isinstance(label, str) else label[0]


def _short(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


@feedback_app.command("list")
def list_feedback(
    model: ModelArg,
    db: DbOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Show the newest N rows.")] = 20,
) -> None:
    """Show the newest feedback rows: the correction, what was predicted, the inputs."""
    store = _open_store(model, db)
    rows = store.feedback_rows(limit=limit)
    table = RichTable(
        "id", "time", "version", "label", "predicted", "comment", "inputs",
        title=f"feedback on {model} ({len(rows)} of {len(store)})",
    )  # fmt: skip
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["time"][:19],
            str(row["model_version"] or ""),
            str(row["label"]),
            "" if row["predicted"] is None else str(row["predicted"]),
            _short(row["comment"] or ""),
            _short(_inputs_text(row["inputs"], store.path.parent), 60),
        )
    out.print(table)


def _inputs_text(inputs: dict[str, Any], store_dir: Path) -> str:
    """``col=value, ...`` with stored media shortened to their hash prefix (``3f2a9c1b.png``)."""
    parts = []
    for col, value in inputs.items():
        if isinstance(value, str) and Path(value).is_relative_to(store_dir):
            value = Path(value).stem[:8] + Path(value).suffix
        parts.append(f"{col}={value}")
    return ", ".join(parts)


@feedback_app.command("export")
def export_feedback(
    model: ModelArg,
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="Output table: .csv, .parquet or .jsonl.")
    ],
    db: DbOption = None,
) -> None:
    """Write the feedback as a trainable table (label in the model's label column)."""
    suffix = out_file.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ConfigError(
            f"--out {out_file}: unknown format {suffix!r}; use one of {', '.join(EXPORT_FORMATS)}"
        )
    store = _open_store(model, db)
    frame = store.to_frame(label_column=_label_column(model))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(out_file, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(out_file, index=False)
    else:
        frame.to_json(out_file, orient="records", lines=True, force_ascii=False)
    out.print(f"{len(frame)} feedback rows written to [bold]{out_file}[/bold]")


def refine(
    model: ModelArg,
    feedback: Annotated[
        Path | None,
        typer.Option(help="Feedback database (default: MODEL/feedback/feedback.sqlite)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Original training table: replay rows (and a 20% held-out part)."),
    ] = None,
    holdout: Annotated[
        Path | None, typer.Option(help="Held-out table the old and new versions are judged on.")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Fine-tuning epochs.")] = 5,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default: the model's lr × 0.3).")
    ] = None,
    replay: Annotated[
        int | None, typer.Option(min=0, help="Replay rows (default: max(4 × feedback, 256)).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="How much worse the held-out metric may get.")
    ] = 0.01,
    seed: Annotated[int, typer.Option(help="Seeds the split, the replay sample, training.")] = 0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Also copy the new version's directory here.")
    ] = None,
) -> None:
    """Fine-tune the live model on its feedback; it goes live only if it did not get worse."""
    from crossfuse.feedback.refine import refine_model

    result = refine_model(
        model,
        _open_store(model, feedback),
        data=data,
        holdout=holdout,
        epochs=epochs,
        lr=lr,
        replay=replay,
        tolerance=tolerance,
        seed=seed,
        out=out_dir,
    )
    table = RichTable("set", "rows", f"version {result.parent}", f"candidate {result.version}")
    for part in ("holdout", "feedback"):
        old, new = result.metrics["old"][part], result.metrics["new"][part]
        first = next(iter(new["tasks"]))
        table.add_row(
            f"{part} {result.metric}",
            str(new["rows"]),
            f"{old['tasks'][first][result.metric]:.4f}",
            f"{new['tasks'][first][result.metric]:.4f}",
        )
    out.print(
        f"trained on {result.feedback_rows} feedback + {result.replay_rows} replay rows; "
        f"judged on {result.holdout_rows} held-out rows"
    )
    out.print(table)
    verdict = "[bold green]promoted[/bold green]" if result.promoted else "[bold]kept[/bold]"
    out.print(f"{verdict} version {result.version} ({result.model_dir}); {result.reason}")
    out.print(f"live version: {result.current}")
    if out_dir is not None:
        out.print(f"version {result.version} copied to [bold]{out_dir}[/bold]")


def rollback(model: ModelArg) -> None:
    """Make the version that was live before the current one live again."""
    from crossfuse import versions

    before = versions.current_version(model)
    after = versions.rollback(model)
    out.print(f"rolled back {model}: live version {before} → {after}")
