"""The `crossfuse` command: a thin layer over the library.

User mistakes (a :class:`~crossfuse.errors.CrossfuseError`) print one clear line on
stderr and exit with status 2; only real bugs show a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from crossfuse.cli.analysis_cmds import compare, report
from crossfuse.cli.common import err, out
from crossfuse.cli.datasets_cmd import build_app, datasets_app
from crossfuse.cli.distill_cmd import distill
from crossfuse.cli.export_cmd import export
from crossfuse.cli.features_cmd import features
from crossfuse.cli.feedback_cmds import feedback_app, refine, rollback
from crossfuse.cli.inspect_cmd import inspect
from crossfuse.cli.model_cmds import embed, evaluate, predict
from crossfuse.cli.serve_cmd import serve
from crossfuse.cli.shards_cmd import build_shards_cmd
from crossfuse.cli.train_cmd import train
from crossfuse.errors import CrossfuseError

app = typer.Typer(
    name="crossfuse",
    help="Cross-modal knowledge fusion: inspect tables, build data sets, train and serve models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(inspect)
app.command()(train)
app.command()(evaluate)
app.command()(predict)
app.command()(embed)
app.command()(features)
app.command()(report)
app.command()(compare)
app.command()(distill)
app.command()(export)
app.command()(serve)
app.command()(refine)
app.command()(rollback)
build_app.command("shards")(build_shards_cmd)
app.add_typer(datasets_app, name="datasets")
app.add_typer(feedback_app, name="feedback")


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the data, models and results.")
    ] = Path("demo_out"),
    epochs: Annotated[int | None, typer.Option(help="Override the demo's epochs.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the data and the models.")] = 0,
    preset: Annotated[
        str | None, typer.Option(help="fast (default), pretrained or finetune encoders.")
    ] = None,
) -> None:
    """Build the demo data, train each modality alone and three fusions, compare on test."""
    from rich.table import Table as RichTable

    from crossfuse.demo import run_demo

    table = RichTable(
        "model", "accuracy", "macro-F1", "train s", title="crossfuse demo (test split)"
    )

    def show(run) -> None:
        out.print(
            f"{run.name}: accuracy {run.accuracy:.3f}, macro-F1 {run.f1_macro:.3f}, "
            f"{run.train_seconds:.1f} s"
        )
        table.add_row(
            run.name, f"{run.accuracy:.3f}", f"{run.f1_macro:.3f}", f"{run.train_seconds:.1f}"
        )

    run_demo(out_dir, seed=seed, epochs=epochs, preset=preset, on_result=show)
    out.print(table)
    out.print(f"results written to {out_dir / 'results.md'}")


def main() -> None:
    """Entry point: run the app; user errors become one line and exit status 2."""
    try:
        app()
    except CrossfuseError as e:
        err.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
