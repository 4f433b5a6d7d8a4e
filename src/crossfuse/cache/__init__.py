"""The embedding cache: frozen encoders compute each distinct cell once, on disk."""

from crossfuse.cache.keys import cell_key, file_digest, fingerprint, module_fingerprint, namespace
from crossfuse.cache.precompute import PrecomputeResult, load_batch, precompute
from crossfuse.cache.store import CachedItem, CacheMissError, EmbeddingStore

__all__ = [
    "CacheMissError",
    "CachedItem",
    "EmbeddingStore",
    "PrecomputeResult",
    "cell_key",
    "file_digest",
    "fingerprint",
    "load_batch",
    "module_fingerprint",
    "namespace",
    "precompute",
]
