"""Run a frozen encoder once per distinct cell and read its features back as batches.

:func:`precompute` encodes only the cells whose content is not yet in the store (so a
second epoch, a second run, or a table with repeated files costs no encoder time), and
:func:`load_batch` turns a batch's keys into the tensors a cached input feeds the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crossfuse.cache.keys import cell_key
from crossfuse.cache.store import CachedItem, CacheMissError, EmbeddingStore
from crossfuse.data.processor import ColumnProcessor
from crossfuse.errors import CellError, ConfigError


@dataclass
class PrecomputeResult:
    """What :func:`precompute` did, and the key of every row."""

    keys: list[str | None]  # per row: the cache key of its features, None = absent row
    encoded: int  # distinct cells run through the encoder now (each duplicate only once)
    reused: int  # present rows that needed no encoder run (cached before, or a duplicate)
    absent: int  # rows without features: missing, unreadable or undecodable cells


def precompute(
    encoder: nn.Module,
    processor: ColumnProcessor,
    cells: Sequence[Any],
    *,
    modality: str,
    base_dir: Path | None,
    store: EmbeddingStore,
    namespace: str,
    batch_size: int = 64,
    store_tokens: bool = False,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> PrecomputeResult:
    """Make sure the store holds the encoder's features for every usable cell.

    Cells are decoded with ``processor.process(cell, train=False)`` (no augmentation)
    and encoded in eval mode under ``torch.inference_mode()``, ``batch_size`` at a time;
    each batch is written as soon as it is encoded, so an interrupted run keeps its
    progress. The encoder is moved to ``device`` for the call and then back, and its
    train/eval mode is restored. ``progress(done, total)`` is called after each batch,
    counting the cells that needed encoding.

    Raises:
        ConfigError: ``batch_size`` < 1, or ``store_tokens`` with an encoder that
            returns no tokens.
    """
    if batch_size < 1:
        raise ConfigError(f"cache batch_size must be at least 1, got {batch_size}")
    keys, first = cell_keys(cells, modality=modality, base_dir=base_dir)
    have = store.contains(namespace, first, with_tokens=store_tokens)
    todo = [(key, row) for key, row in first.items() if key not in have]
    failed: set[str] = set()
    encoded = 0
    if todo:
        run = BatchRunner(encoder, processor, store, namespace, store_tokens, device)
        with frozen_on(encoder, torch.device(device)):
            buffer: list[tuple[str, torch.Tensor]] = []
            for done, (key, row) in enumerate(todo, start=1):
                try:
                    buffer.append((key, processor.process(cells[row], base_dir=base_dir)))
                except CellError:
                    failed.add(key)
                flush = len(buffer) == batch_size or (done == len(todo) and buffer)
                if flush:
                    encoded += run(buffer, failed)
                    buffer = []
                if progress is not None and (flush or done == len(todo)):
                    progress(done, len(todo))
    keys = [None if key in failed else key for key in keys]
    absent = sum(key is None for key in keys)
    return PrecomputeResult(keys, encoded, len(keys) - absent - encoded, absent)


def cell_keys(
    cells: Sequence[Any], *, modality: str, base_dir: Path | None
) -> tuple[list[str | None], dict[str, int]]:
    """Every row's cache key, and each distinct key's first row (in row order)."""
    keys = [cell_key(c, modality=modality, base_dir=base_dir) for c in cells]
    first: dict[str, int] = {}  # key → first row holding it
    for row, key in enumerate(keys):
        if key is not None:
            first.setdefault(key, row)
    return keys, first


class BatchRunner:
    """Collate a buffer of processed cells, encode it, and write its rows."""

    def __init__(
        self,
        encoder: nn.Module,
        processor: ColumnProcessor,
        store: EmbeddingStore,
        namespace: str,
        store_tokens: bool,
        device: str | torch.device,
    ) -> None:
        self.encoder, self.processor, self.store = encoder, processor, store
        self.namespace, self.store_tokens, self.device = namespace, store_tokens, device

    def __call__(self, buffer: list[tuple[str, torch.Tensor]], failed: set[str]) -> int:
        """Encode and store ``buffer``; keys the encoder marks absent go to ``failed``."""
        items = self.encode(buffer, failed)
        self.store.put_many(self.namespace, items)
        return len(items)

    def encode(
        self, buffer: list[tuple[str, torch.Tensor]], failed: set[str]
    ) -> dict[str, CachedItem]:
        """The features of ``buffer``'s cells; keys the encoder marks absent go to ``failed``."""
        batch = self.processor.collate([x for _, x in buffer])
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            out = self.encoder(batch)
        if self.store_tokens and out.tokens is None:
            raise ConfigError(
                f"encoder {type(self.encoder).__name__} returns no token features; "
                "cache it with store_tokens=False"
            )
        present = out.present.cpu()
        items: dict[str, CachedItem] = {}
        for i, (key, _) in enumerate(buffer):
            if not present[i]:
                failed.add(key)
                continue
            pooled = out.pooled[i].float().cpu()  # (D,)
            if not self.store_tokens:
                items[key] = CachedItem(pooled)
                continue
            tokens = out.tokens[i].float().cpu()  # (T, D)
            mask = torch.ones(len(tokens), dtype=torch.bool)
            if out.token_mask is not None:
                mask = out.token_mask[i].cpu()
            real = mask.nonzero()
            length = int(real.max()) + 1 if real.numel() else 1  # drop trailing padding
            items[key] = CachedItem(pooled, tokens[:length].clone(), mask[:length].clone())
        return items


@contextmanager
def frozen_on(encoder: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode on ``device`` for the block; the previous mode and device come back after."""
    was_training = encoder.training
    home = next((t.device for t in [*encoder.parameters(), *encoder.buffers()]), None)
    encoder.eval().to(device)
    try:
        yield
    finally:
        encoder.train(was_training)
        if home is not None and home != device:
            encoder.to(home)


def load_batch(
    store: EmbeddingStore,
    namespace: str,
    keys: list[str | None],
    *,
    tokens: bool | None = None,
) -> dict[str, torch.Tensor]:
    """The batch a cached input becomes, from the keys :func:`precompute` returned.

    Gives ``cached_pooled (B, D)`` float32 and ``present (B,)`` bool, plus
    ``cached_tokens (B, T, D)`` and ``cached_token_mask (B, T)`` (T padded to the
    longest row) when tokens were stored. ``tokens=None`` includes them when the
    namespace holds them; True requires them; False leaves them out. Absent rows (key
    None) are all zeros and masked out.

    Raises:
        CacheMissError: a key is not in the store (the cache was cleared or is stale),
            the namespace is empty, or tokens were asked for but not stored.
    """
    items = store.get_many(namespace, [k for k in keys if k is not None])
    missing = {k for k in keys if k is not None and k not in items}
    if missing:
        raise CacheMissError(
            f"{len(missing)} cached feature rows are missing from {store.path} "
            f"(namespace {namespace[:12]}); run precompute again for this input"
        )
    shape = _shape(store, namespace, items)
    present = torch.tensor([k is not None for k in keys], dtype=torch.bool)  # (B,)
    pooled = torch.zeros((len(keys), shape["pooled"][0]))  # (B, D)
    for row, key in enumerate(keys):
        if key is not None:
            pooled[row] = items[key].pooled
    out = {"cached_pooled": pooled, "present": present}
    if tokens is False or (tokens is None and "tokens" not in shape):
        return out
    if "tokens" not in shape or any(it.tokens is None for it in items.values()):
        raise CacheMissError(
            f"token features were not cached under namespace {namespace[:12]}; "
            "precompute with store_tokens=True"
        )
    length = max([1, *(len(it.tokens) for it in items.values() if it.tokens is not None)])
    seq = torch.zeros((len(keys), length, shape["tokens"][1]))  # (B, T, D)
    mask = torch.zeros((len(keys), length), dtype=torch.bool)  # (B, T)
    for row, key in enumerate(keys):
        item = items[key] if key is not None else None
        if item is not None and item.tokens is not None and item.token_mask is not None:
            seq[row, : len(item.tokens)] = item.tokens
            mask[row, : len(item.tokens)] = item.token_mask
    return {**out, "cached_tokens": seq, "cached_token_mask": mask}


def _shape(
    store: EmbeddingStore, namespace: str, items: dict[str, CachedItem]
) -> dict[str, list[int]]:
    """Feature shapes of the batch's rows (checked to agree), or of any row in the namespace."""
    if not items:
        stored = store.shape(namespace)
        if stored is None:
            raise CacheMissError(f"no features are cached under namespace {namespace[:12]}")
        return stored
    dims = {len(it.pooled) for it in items.values()}
    token_dims = {it.tokens.shape[1] for it in items.values() if it.tokens is not None}
    if len(dims) > 1 or len(token_dims) > 1:
        raise CacheMissError(
            f"cached rows under namespace {namespace[:12]} have different widths "
            f"{sorted(dims | token_dims)}; clear the cache and precompute again"
        )
    shape: dict[str, list[int]] = {"pooled": [dims.pop()]}
    if token_dims:
        shape["tokens"] = [0, token_dims.pop()]
    return shape
