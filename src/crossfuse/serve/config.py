"""Settings of the HTTP prediction service (limits, micro-batching, timeouts)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from crossfuse.errors import ConfigError

MIB = 1024 * 1024


@dataclass
class ServeConfig:
    """Limits and batching of ``crossfuse serve``.

    The limits bound what one request can make the server hold in memory; the batching
    settings trade a few milliseconds of latency for throughput under concurrent load.
    """

    max_upload_bytes: int = 10 * MIB  # per media file (upload or decoded base64)
    max_text_chars: int = 10_000  # per text (or categorical) value
    max_batch_rows: int = 64  # rows in one POST /predict/batch
    request_timeout_s: float = 30.0  # waiting for the model longer than this → 504
    batch_wait_ms: float = 5.0  # after a row arrives, wait this long for more to batch
    max_batch: int = 32  # rows the model scores together at most

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_text_chars", "max_batch_rows", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"serve.{name} must be a whole number ≥ 1, got {value!r}")
        for name, low_ok in (("request_timeout_s", False), ("batch_wait_ms", True)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
                or (value == 0 and not low_ok)
            ):
                bound = "≥ 0" if low_ok else "> 0"
                raise ConfigError(f"serve.{name} must be a finite number {bound}, got {value!r}")

    def to_dict(self) -> dict[str, float | int]:
        """The settings as a plain dict (for logs and the /model endpoint)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
