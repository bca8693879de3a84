"""The writer lock's fast lane: urgent waiters first, nobody lost, cancellation safe."""

from __future__ import annotations

import asyncio

from core.storage.write_lock import WriteLock


async def test_urgent_waiters_go_first_and_everyone_gets_a_turn() -> None:
    lock = WriteLock()
    order: list[str] = []

    async def job(name: str, urgent: bool) -> None:
        async with lock.hold(urgent=urgent):
            order.append(name)
            await asyncio.sleep(0.01)

    first = asyncio.create_task(job("first", False))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(job(f"ordinary{n}", False)) for n in range(3)]
    await asyncio.sleep(0)
    urgent = asyncio.create_task(job("urgent", True))
    await asyncio.gather(first, urgent, *waiting)
    assert order == ["first", "urgent", "ordinary0", "ordinary1", "ordinary2"]


async def test_a_cancelled_waiter_does_not_keep_or_lose_the_lock() -> None:
    lock = WriteLock()
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with lock.hold():
            held.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await held.wait()
    cancelled = asyncio.create_task(lock.hold().__aenter__())
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await task
    async with asyncio.timeout(1):  # the lock is free again
        async with lock.hold():
            pass


async def test_exclusion_under_contention() -> None:
    lock = WriteLock()
    inside = 0
    peak = 0

    async def job(n: int) -> None:
        nonlocal inside, peak
        async with lock.hold(urgent=n % 3 == 0):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(job(n) for n in range(200)))
    assert peak == 1
