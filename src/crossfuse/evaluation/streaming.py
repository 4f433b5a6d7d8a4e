"""Evaluating a model, and extracting its embeddings, over a table read in row chunks.

Between chunks only a few numbers per row are kept (class probabilities or values,
targets, presence flags), never a chunk's rows or decoded media, so a table larger
than memory can be evaluated; the result has the structure and values of
:func:`~crossfuse.evaluation.evaluate.evaluate_model` on the whole table (floats may
differ by ~1e-7: the model sees other batch compositions at chunk boundaries).
Problems and strict-mode errors name rows of the whole table, not of the chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.problems import ProblemLog
from crossfuse.data.stream import DEFAULT_CHUNK_ROWS, iter_table
from crossfuse.data.table import SUFFIXES, Table, TableLike
from crossfuse.errors import CellError, ConfigError, TableError
from crossfuse.evaluation.evaluate import (
    ProblemTally,
    Variant,
    ablation_summary,
    ablation_variants,
    metrics_from_inference,
    presence_fractions,
)
from crossfuse.models.fusion_model import FusionModel
from crossfuse.models.inference import Inference, concat_inferences, run_inference

FULL = ("full", "")  # key of the unablated model's per-chunk inferences


def evaluate_stream(
    model: FusionModel,
    pre: Preprocessor,
    chunks: Iterable[Table],
    *,
    ablate: bool = False,
    batch_size: int = 64,
    strict: bool = False,
    cached: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` over consecutive row ``chunks`` of one labelled table.

    Returns the same dict as ``evaluate_model`` on the concatenated table: ``rows``,
    ``tasks``, ``inputs_present``, ``problems`` and, with ``ablate=True``, ``ablation``
    (each chunk is decoded once and reused for every ablation variant). ``cached``
    (input → :class:`~crossfuse.training.cached_inputs.CachedColumn` of a single
    table) reads those inputs' frozen-encoder features from the embedding cache.
    """
    variants = ablation_variants(model.input_names) if ablate else {}
    kept: dict[Variant, list[Inference]] = {FULL: [], **{v: [] for v in variants}}
    problems = ProblemTally()
    rows = 0
    for chunk in chunks:
        if cached and rows:
            raise ValueError("evaluate_stream: cached features cover a single table only")
        with _table_rows(rows):
            dataset = FusionDataset(chunk, pre, labels=True, strict=strict, cached=cached)
            loader = DataLoader(
                dataset, batch_size=batch_size, collate_fn=Collator(pre, dataset.cached)
            )
            batches = list(loader) if ablate else loader  # decode once, reuse per variant
            full = run_inference(model, pre, chunk, labels=True, loader=batches)
        problems.add(full.problems, row_offset=rows)
        kept[FULL].append(_scores_only(full))
        for key, keep in variants.items():
            inf = run_inference(model, pre, chunk, labels=True, loader=batches, keep=keep)
            kept[key].append(_scores_only(inf))
        rows += len(chunk)
    if rows == 0:
        raise TableError("nothing to evaluate: the table has no rows")
    whole = concat_inferences(kept.pop(FULL))
    result: dict[str, Any] = {
        "rows": rows,
        "tasks": metrics_from_inference(whole, pre),
        "inputs_present": presence_fractions(whole),
        "problems": problems.summary(),
    }
    if ablate:
        metrics = {k: metrics_from_inference(concat_inferences(v), pre) for k, v in kept.items()}
        result["ablation"] = ablation_summary(metrics, result["tasks"])
    return result


def iter_embeddings(
    model: FusionModel,
    pre: Preprocessor,
    chunks: Iterable[Table],
    *,
    fused: bool = True,
    batch_size: int = 64,
) -> Iterator[dict[str, np.ndarray]]:
    """Per chunk, ``{"fused": (B, H)}``, or ``{input: (B, D)}`` pooled per input."""
    rows = 0
    for chunk in chunks:
        with _table_rows(rows):
            inf = run_inference(
                model, pre, chunk, labels=False, embeddings=True, batch_size=batch_size
            )
        rows += len(chunk)
        if fused and inf.fused is not None:
            yield {"fused": inf.fused.numpy()}
        elif len(chunk):
            yield {name: value.numpy() for name, value in inf.pooled.items()}


def embedding_paths(out: str | Path, names: Iterable[str] | None) -> dict[str, Path]:
    """Where each embedding goes: ``out`` for the fused one, else ``<stem>.<input>.npy``."""
    out = Path(out)
    if out.suffix.lower() != ".npy":
        raise ConfigError(f"out must be a .npy file, got {str(out)!r}")
    if names is None:
        return {"fused": out}
    paths = {}
    for name in names:
        if not name or name in (".", "..") or Path(name).name != name:
            raise ConfigError(f"input {name!r} cannot be part of a file name; use fused=True")
        paths[name] = out.with_name(f"{out.stem}.{name}.npy")
    return paths


def save_embeddings(
    model: FusionModel,
    pre: Preprocessor,
    source: TableLike,
    out: str | Path,
    *,
    fused: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    batch_size: int = 64,
) -> np.ndarray | dict[str, np.ndarray]:
    """Write the embeddings of every row of ``source`` to ``.npy`` files, chunk by chunk.

    The rows are counted first (a pass that parses the table but decodes no media and
    runs no model; free for Parquet), so each file is one preallocated float32
    ``(N, H)`` memmap filled chunk by chunk: nothing is copied twice and nothing but a
    chunk is held in memory. Each file is written as ``.<name>.partial`` beside its
    target and renamed when complete; on error the partial files are removed.

    Returns the fused embeddings' read-only memmap, or, with ``fused=False``, a dict of
    per-input memmaps written to ``<stem>.<input>.npy`` (see :func:`embedding_paths`).
    """
    paths = embedding_paths(out, None if fused else model.input_names)
    total = count_rows(source, chunk_rows=chunk_rows)
    if total == 0:
        raise TableError("nothing to embed: the table has no rows")
    partial = {k: p.with_name(f".{p.name}.partial") for k, p in paths.items()}
    arrays: dict[str, np.memmap] = {}
    rows = 0
    try:
        chunks = iter_table(source, chunk_rows=chunk_rows)
        for part in iter_embeddings(model, pre, chunks, fused=fused, batch_size=batch_size):
            n = len(next(iter(part.values())))
            if rows + n > total:
                raise TableError(f"the table grew while being read (more than {total} rows)")
            for key, value in part.items():  # value: (B, D)
                if key not in arrays:
                    partial[key].parent.mkdir(parents=True, exist_ok=True)
                    arrays[key] = np.lib.format.open_memmap(
                        partial[key], mode="w+", dtype=np.float32, shape=(total, value.shape[1])
                    )
                arrays[key][rows : rows + n] = value
            rows += n
        if rows != total:
            raise TableError(f"the table shrank while being read ({rows} of {total} rows)")
        for array in arrays.values():
            array.flush()
        arrays.clear()  # unmap before renaming
        for key, path in paths.items():
            os.replace(partial[key], path)
    except BaseException:
        arrays.clear()
        for path in partial.values():
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    loaded = {k: np.load(p, mmap_mode="r") for k, p in paths.items()}
    return loaded["fused"] if fused else loaded


def count_rows(source: TableLike, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Rows of ``source``: from the metadata for Parquet, else by streaming it once."""
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if path.is_file() and SUFFIXES.get(path.suffix.lower()) == "parquet":
            import pyarrow.parquet as pq

            with contextlib.suppress(Exception):  # unreadable: iter_table says why below
                return int(pq.ParquetFile(path).metadata.num_rows)
    return sum(len(chunk) for chunk in iter_table(source, chunk_rows=chunk_rows))


def _scores_only(inf: Inference) -> Inference:
    """What the metrics need from a chunk's inference (problems are tallied apart)."""
    return dataclasses.replace(inf, fused=None, pooled={}, problems=ProblemLog())


@contextlib.contextmanager
def _table_rows(offset: int) -> Iterator[None]:
    """Re-raise a strict-mode :class:`CellError` with its row counted from the table's start."""
    try:
        yield
    except CellError as e:
        if not offset or e.row is None or e.column is None:
            raise
        raise e.located(row=e.row + offset, column=e.column, table=e.table) from None
