"""`crossfuse inspect`: schema, class balance and problems of a table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from crossfuse.cli.common import out, parse_overrides, progress_bar
from crossfuse.data.inspect import InspectReport, inspect_table
from crossfuse.errors import CrossfuseError


def inspect(
    table: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or Parquet table.")],
    label: Annotated[
        list[str], typer.Option("--label", "-l", help="Label column (repeat for multitask).")
    ],
    modality: Annotated[
        list[str] | None,
        typer.Option(
            "--modality",
            "-m",
            help="Force a column's modality: COLUMN=text|image|audio|numeric|categorical|ignore.",
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="Force the task: classification or regression.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on the first unusable cell.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    max_problems: Annotated[
        int, typer.Option(help="How many problems to list (all are counted).")
    ] = 50,
) -> None:
    """Show the inferred schema, class balance and every problem found, with row numbers."""
    report = inspect_table(
        table,
        label,
        overrides=parse_overrides(modality),
        task=task,
        progress=None if as_json else progress_bar("checking cells"),
    )
    if strict and len(report.problems):
        first = next(iter(report.problems))  # problems iterate in row order
        raise CrossfuseError(
            f"table {report.table}, {first} (strict mode; {len(report.problems)} problem(s) in all)"
        )
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render_report(report, max_problems)


def render_report(report: InspectReport, max_problems: int = 50) -> None:
    """Print a report as rich tables."""
    out.print(f"[bold]{report.table}[/bold]: {report.rows} rows")
    schema = RichTable("column", "modality", "missing", "why", title="Schema")
    for col, mod in report.schema.columns.items():
        missing = report.missing_by_column.get(col, "")
        schema.add_row(col, str(mod), str(missing), report.schema.reasons.get(col, ""))
    for col in report.schema.labels:
        schema.add_row(
            col, f"label ({report.schema.tasks[col]})", "", report.schema.reasons.get(col, "")
        )
    out.print(schema)
    for col, summary in report.balance.items():
        if summary["task"] == "classification":
            bal = RichTable("class", "rows", "share", title=f"Class balance of {col!r}")
            total = sum(summary["counts"].values()) or 1
            for cls, n in summary["counts"].items():
                bal.add_row(cls, str(n), f"{n / total:.1%}")
        else:
            bal = RichTable(*summary.keys(), title=f"Label {col!r}")
            bal.add_row(*(str(v) for v in summary.values()))
        out.print(bal)
    errors = report.errors
    if not errors:
        out.print("[green]no problems found[/green] (empty cells are listed as missing above)")
        return
    probs = RichTable(
        "row",
        "column",
        "problem",
        "file",
        title=f"Problems ({len(errors)}; showing {min(len(errors), max_problems)})",
    )
    folder = Path(report.table).parent
    for p in errors[:max_problems]:
        file = os.path.relpath(p.file, folder) if p.file else ""  # short, as written in the table
        probs.add_row("" if p.row is None else str(p.row), p.column or "", p.reason, file)
    out.print(probs)
