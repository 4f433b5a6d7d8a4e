"""The micro-batcher: rows from concurrent callers are scored together, off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from crossfuse.serve.batcher import BatchTimeout, MicroBatcher


class Recorder:
    """A scoring function that records its batches and the thread it ran on."""

    def __init__(self, delay: float = 0.0, fail_on: object = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.batches: list[list[object]] = []
        self.threads: set[int] = set()

    def __call__(self, rows: Sequence[object]) -> list[object]:
        self.threads.add(threading.get_ident())
        self.batches.append(list(rows))
        time.sleep(self.delay)
        if self.fail_on in rows:
            raise ValueError(f"bad row {self.fail_on!r}")
        return [f"result {r}" for r in rows]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_concurrent_rows_are_batched_and_results_matched() -> None:
    score = Recorder()

    async def main():
        batcher = MicroBatcher(score, max_batch=8, wait_ms=50)
        await batcher.start()
        try:
            results = await asyncio.gather(*(batcher.submit(i, timeout=10) for i in range(20)))
        finally:
            await batcher.stop()
        return batcher, results

    batcher, results = run(main())
    assert results == [f"result {i}" for i in range(20)]  # each caller gets its own row's result
    assert [len(b) for b in score.batches] == [8, 8, 4]  # capped at max_batch
    assert (batcher.batches, batcher.rows) == (3, 20)
    assert threading.get_ident() not in score.threads  # scored in a worker thread


def test_event_loop_keeps_running_while_the_model_works() -> None:
    score = Recorder(delay=0.3)

    async def main():
        batcher = MicroBatcher(score, max_batch=4, wait_ms=0)
        await batcher.start()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            await batcher.submit("row", timeout=10)
        finally:
            task.cancel()
            await batcher.stop()
        return ticks

    assert run(main()) >= 10  # the loop ticked during the 0.3 s of scoring


def test_a_bad_row_fails_alone() -> None:
    score = Recorder(fail_on="bad")

    async def main():
        batcher = MicroBatcher(score, max_batch=8, wait_ms=30)
        await batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(r, timeout=10) for r in ("ok1", "bad", "ok2")),
                return_exceptions=True,
            )
        finally:
            await batcher.stop()

    ok1, bad, ok2 = run(main())
    assert (ok1, ok2) == ("result ok1", "result ok2")
    assert isinstance(bad, ValueError) and "bad row 'bad'" in str(bad)


def test_timeout_and_shutdown() -> None:
    score = Recorder(delay=0.5)

    async def main():
        batcher = MicroBatcher(score, max_batch=2, wait_ms=0)
        await batcher.start()
        with pytest.raises(BatchTimeout):
            await batcher.submit("slow", timeout=0.05)
        pending = asyncio.create_task(batcher.submit("late", timeout=10))
        await asyncio.sleep(0.05)
        await batcher.stop()
        with pytest.raises(RuntimeError, match="shutting down"):
            await pending
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit("after", timeout=1)

    run(main())
