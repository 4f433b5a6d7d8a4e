"""The `crossfuse` command: a thin layer over the library.

User mistakes (a :class:`~crossfuse.errors.CrossfuseError`) print one clear line on
stderr and exit with status 2; only real bugs show a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from crossfuse.cli.common import err, out
from crossfuse.cli.datasets_cmd import datasets_app
from crossfuse.cli.inspect_cmd import inspect, render_report
from crossfuse.errors import CrossfuseError

app = typer.Typer(
    name="crossfuse",
    help="Cross-modal knowledge fusion: inspect tables, build data sets, train and serve models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(inspect)
app.add_typer(datasets_app, name="datasets")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the data and results.")] = Path(
        "demo_out"
    ),
) -> None:
    """Build the demo data set and check it (what `make demo` runs)."""
    from crossfuse.cli.common import progress_bar
    from crossfuse.data.builtin.demo import build_demo
    from crossfuse.data.inspect import inspect_table

    result = build_demo(out_dir / "data", progress=True)
    out.print(f"[bold]demo data set[/bold] written to {result.out_dir}")
    render_report(inspect_table(result.train, "label", progress=progress_bar("checking cells")), 20)


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
