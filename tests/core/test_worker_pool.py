"""The worker pool's own promises: it stops when told to, whatever else happens at that moment."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from core.storage.inbox_queue import InboxItem, InboxQueue
from core.worker_pool import WorkerPool


class EmptyQueue:
    """Nothing to claim; counts the claims."""

    def __init__(self) -> None:
        self.claims = 0

    async def claim(self, owner: str, limit: int) -> list[InboxItem]:
        self.claims += 1
        return []


class Idle:
    async def process(self, item: InboxItem) -> None:
        raise AssertionError("nothing was claimed")


async def test_a_stop_that_lands_as_the_pool_is_woken_still_stops_it() -> None:
    """A webhook commit or a finished event wakes the pool at the moment SIGTERM stops it. Python 3.11's
    `asyncio.wait_for` loses a cancellation that arrives once the awaited event is set: the pool then went on
    claiming and answering after the stop, and the shutdown waited for it forever."""
    queue = EmptyQueue()
    pool = WorkerPool(cast(InboxQueue, queue), cast(Any, Idle()), concurrency=4, poll_seconds=30.0)
    pool.start()
    for _ in range(5):
        await asyncio.sleep(0)  # the pool has looked once and waits to be woken
    assert queue.claims == 1
    pool.wake()
    async with asyncio.timeout(5.0):
        await pool.stop()  # at once: the pool has not run since it was woken
    await asyncio.sleep(0.05)
    assert queue.claims == 1  # nothing claimed after the stop


class StuckClaim:
    """A claim that never gets its turn at the database (behind the write lock, waiting for a pooled connection)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def claim(self, owner: str, limit: int) -> list[InboxItem]:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return []


async def test_a_claim_stuck_behind_the_database_does_not_hold_a_stop_and_is_called_off() -> None:
    """The stop waits a bounded time for the claim (to give back what it leased), then calls it off: it must not
    lease events once the process has stopped."""
    queue = StuckClaim()
    pool = WorkerPool(cast(InboxQueue, queue), cast(Any, Idle()), concurrency=4)
    pool.start()
    await asyncio.wait_for(queue.started.wait(), 5.0)
    async with asyncio.timeout(10.0):
        await pool.stop()
    await asyncio.sleep(0)
    assert queue.cancelled


async def test_a_stop_keeps_to_its_callers_deadline() -> None:
    """A shutdown that gives the pool 0.3 s gets control back then, not after the pool's own bounds."""
    queue = StuckClaim()
    pool = WorkerPool(cast(InboxQueue, queue), cast(Any, Idle()), concurrency=4)
    pool.start()
    await asyncio.wait_for(queue.started.wait(), 5.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await pool.stop()
    await asyncio.sleep(0)
    assert queue.cancelled
