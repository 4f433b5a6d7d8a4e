"""`crossfuse features`: write a table's fused embeddings to a .npy file, streaming it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crossfuse.cli.common import out as console
from crossfuse.data.stream import DEFAULT_CHUNK_ROWS
from crossfuse.errors import ConfigError


def check_chunk_rows(chunk_rows: int | None) -> None:
    """Refuse a ``--chunk-rows`` below 1 with a message naming the option."""
    if chunk_rows is not None and chunk_rows < 1:
        raise ConfigError(f"--chunk-rows must be a positive integer, got {chunk_rows}")


def features(
    model: Annotated[Path, typer.Argument(help="Model directory.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Table to embed (labels not needed).")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help=".npy file for the (rows, hidden) float32 embeddings."),
    ],
    chunk_rows: Annotated[
        int, typer.Option(help="Rows read and embedded at a time (memory stays flat).")
    ] = DEFAULT_CHUNK_ROWS,
    per_input: Annotated[
        bool,
        typer.Option(
            "--per-input",
            help="Write each input's pooled embedding to OUT_STEM.<input>.npy instead.",
        ),
    ] = False,
) -> None:
    """Write the fused embedding of every row of a table (for search, clustering, probes).

    The table is streamed in chunks (CSV, TSV, JSONL and Parquet are never read whole)
    and the file appears only once it is complete; load it with ``numpy.load``.
    """
    from crossfuse.api import FusionPredictor
    from crossfuse.evaluation.streaming import embedding_paths

    check_chunk_rows(chunk_rows)
    predictor = FusionPredictor.load(model)
    written = predictor.extract_embedding(data, fused=not per_input, chunk_rows=chunk_rows, out=out)
    arrays = written if isinstance(written, dict) else {"fused": written}
    paths = embedding_paths(out, list(arrays) if per_input else None)
    for name, array in arrays.items():
        rows, dim = array.shape
        console.print(
            f"{rows} {name} embeddings of size {dim} written to {paths[name]}", soft_wrap=True
        )
