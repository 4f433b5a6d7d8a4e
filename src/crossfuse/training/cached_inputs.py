"""Training from cached features: frozen encoders run once per distinct cell.

An input is cached when its encoder is frozen, its processor does no augmentation and
caching is on. Its features are computed (or found) in the embedding store before
training; the dataset then hands over cache keys instead of decoded media, and the
model skips that encoder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from crossfuse.cache import EmbeddingStore, load_batch, module_fingerprint, namespace, precompute
from crossfuse.cache.sharded import RankGroup, precompute_sharded
from crossfuse.config import TrainConfig
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.table import Table
from crossfuse.models import FusionModel
from crossfuse.models.transfer import is_frozen


@dataclass
class CachedColumn:
    """Where one input's cached features live and the key of every row of one table."""

    store: EmbeddingStore
    namespace: str
    keys: list[str | None]
    encoded: int = 0  # cells run through the encoder for this table
    reused: int = 0  # cells found in the cache

    def load(self, keys: list[str | None]) -> dict[str, torch.Tensor]:
        """The batch for ``keys``: ``cached_pooled``, ``present`` (and tokens if stored)."""
        return load_batch(self.store, self.namespace, keys)


def default_cache_dir() -> Path:
    """``$CROSSFUSE_CACHE``, else ``~/.cache/crossfuse/embeddings``."""
    env = os.environ.get("CROSSFUSE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "crossfuse" / "embeddings"


def cacheable_inputs(model: FusionModel, pre: Preprocessor, config: TrainConfig) -> list[str]:
    """Inputs whose encoder output depends only on the cell: frozen, no augmentation."""
    if not config.cache:
        return []
    return [
        col
        for col, proc in pre.columns.items()
        if is_frozen(model.encoders[col]) and not getattr(proc.config, "augment", False)
    ]


def cache_table(
    model: FusionModel,
    pre: Preprocessor,
    table: Table,
    columns: list[str],
    config: TrainConfig,
    *,
    device: torch.device,
    progress=None,
    group: RankGroup | None = None,
) -> dict[str, CachedColumn]:
    """Encode (or find) every cacheable cell of ``table``; returns the keys per column.

    With ``group`` (a DDP job) the ranks share the encoding work, see
    :func:`~crossfuse.cache.sharded.precompute_sharded`.
    """
    store = EmbeddingStore(config.cache_dir or default_cache_dir())
    out = {}
    for col in columns:
        encoder, proc = model.encoders[col], pre.columns[col]
        ns = namespace(
            module_fingerprint(encoder, {"class": type(encoder).__name__}), proc.get_state()
        )
        run = precompute if group is None else partial(precompute_sharded, group=group)
        result = run(
            encoder,
            proc,
            list(table.df[col]),
            modality=proc.modality,
            base_dir=table.base_dir,
            store=store,
            namespace=ns,
            batch_size=config.batch_size,
            device=device,
            progress=progress(col, table.name) if progress else None,
        )
        out[col] = CachedColumn(store, ns, result.keys, result.encoded, result.reused)
    return out
