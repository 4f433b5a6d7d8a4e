"""`crossfuse datasets build shards`: convert a table into WebDataset-style tar shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crossfuse.cli.common import err, out

_SHOWN_PROBLEMS = 5


def build_shards_cmd(
    table: Annotated[
        str, typer.Option("--table", "-t", help="Table to convert (any format crossfuse reads).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for shard-000000.tar, ...")],
    rows_per_shard: Annotated[
        int, typer.Option("--rows-per-shard", help="Samples (rows) per shard.")
    ] = 1000,
    media: Annotated[
        list[str] | None,
        typer.Option(
            "--media",
            help="A column whose files become shard members (repeatable); "
            "default: the image/audio columns.",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace the shard-*.tar files already in --out.")
    ] = False,
) -> None:
    """Write a table as tar shards: media files become members, other columns <key>.json."""
    from crossfuse.data.shard_writer import write_shards

    result = write_shards(
        table, out_dir, rows_per_shard=rows_per_shard, media=media, overwrite=overwrite
    )
    media_text = ", ".join(result.media_columns) or "none"
    plain = {"markup": False, "highlight": False, "soft_wrap": True}  # paths print as given
    out.print(
        f"{result.rows} rows written as {len(result.shards)} shard(s) to {result.out_dir} "
        f"(media columns: {media_text})",
        **plain,
    )
    if result.problems:
        err.print(f"{len(result.problems)} media cell(s) left out (unreadable):", **plain)
        for problem in result.problems[:_SHOWN_PROBLEMS]:
            err.print(f"  {problem}", **plain)
        if len(result.problems) > _SHOWN_PROBLEMS:
            err.print(f"  ... and {len(result.problems) - _SHOWN_PROBLEMS} more", **plain)
