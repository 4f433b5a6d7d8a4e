"""Micro-batching: rows from concurrent requests are scored together.

Requests put ``(row, future)`` into a queue; one background task takes up to
``max_batch`` rows — waiting at most ``batch_wait_ms`` after the oldest arrived — and
runs the model on them in a worker thread, so the event loop keeps serving while the
model works. Only one batch runs at a time, so the model is never used concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

ScoreFn = Callable[[Sequence[Any]], list[Any]]


class BatchTimeout(Exception):
    """A row waited longer than the request timeout for its result."""


@dataclass
class _Item:
    row: Any
    future: asyncio.Future
    arrived: float = field(default=0.0)


class MicroBatcher:
    """Collects rows into batches for ``score`` (rows → one result per row, in order).

    Attributes:
        batches: batches scored so far.
        rows: rows scored so far (``rows / batches`` is the mean batch size).
    """

    def __init__(self, score: ScoreFn, *, max_batch: int = 32, wait_ms: float = 5.0) -> None:
        self.score = score
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.batches = 0
        self.rows = 0
        self._pending: deque[_Item] = deque()
        self._arrived: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._current: list[_Item] = []  # the batch being scored

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the background task (in the running event loop)."""
        if self.running:
            return
        self._arrived, self._full = asyncio.Event(), asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="crossfuse-batcher")

    async def stop(self) -> None:
        """Stop the task; rows still waiting fail with a "shutting down" error."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for item in [*self._current, *self._pending]:
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))
        self._pending.clear()
        self._current = []

    async def submit(self, row: Any, timeout: float | None = None) -> Any:
        """The result for ``row``; :class:`BatchTimeout` after ``timeout`` seconds."""
        if not self.running or self._arrived is None or self._full is None:
            raise RuntimeError("the batcher is not running")
        loop = asyncio.get_running_loop()
        item = _Item(row, loop.create_future(), loop.time())
        self._pending.append(item)
        self._arrived.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
        try:
            return await asyncio.wait_for(item.future, timeout)
        except TimeoutError:
            raise BatchTimeout(f"no result within {timeout} s") from None

    async def _loop(self) -> None:
        assert self._arrived is not None and self._full is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            wait = self._pending[0].arrived + self.wait_s - loop.time()
            if wait > 0 and len(self._pending) < self.max_batch:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), wait)
            batch: list[_Item] = []
            while self._pending and len(batch) < self.max_batch:
                item = self._pending.popleft()
                if not item.future.done():  # its request timed out or was cancelled
                    batch.append(item)
            if len(self._pending) < self.max_batch:
                self._full.clear()
            if batch:
                self._current = batch
                await self._run(batch)
                self._current = []

    async def _run(self, batch: list[_Item]) -> None:
        try:
            results = await asyncio.to_thread(self.score, [it.row for it in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"scored {len(batch)} rows but got {len(results)} results")
        except Exception as exc:  # noqa: BLE001 — delivered to the requests, not lost
            if len(batch) > 1:  # one bad row must not fail the others: score them alone
                for item in batch:
                    await self._run([item])
                return
            log.exception("scoring a row failed")
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        self.batches += 1
        self.rows += len(batch)
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
