"""Consoles and small parsing helpers shared by the commands."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from crossfuse.errors import ConfigError

out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """`COLUMN=MODALITY` pairs from the command line."""
    result = {}
    for item in items or []:
        col, sep, modality = item.partition("=")
        if not sep or not col or not modality:
            raise ConfigError(f"--modality expects COLUMN=MODALITY, got {item!r}")
        result[col] = modality
    return result


def progress_bar(description: str):
    """A ``progress(iterable, total)`` wrapper that draws a rich progress bar on stderr."""

    def wrap(items: Iterable[T], total: int) -> Iterator[T]:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)

    return wrap
