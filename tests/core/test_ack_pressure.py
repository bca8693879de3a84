"""Workers give way to webhook acknowledgements: a slow commit cuts how many inbox events run at once, never below
one, and the allowance grows back with time; without slow acknowledgements the pool runs at its full size."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from core.ack_pressure import COOLDOWN_SECONDS, DECREASE, RECOVERY_PER_SECOND, WorkerAllowance
from core.metrics import Metrics
from core.storage.inbox_queue import InboxItem, InboxQueue
from core.worker_pool import WorkerPool


def test_a_slow_commit_cuts_the_allowance_and_time_gives_it_back() -> None:
    allowance = WorkerAllowance(8, target_ms=4)
    assert allowance.allowed(0.0) == 8
    assert not allowance.acknowledged(0.5, 0.0, running=8)  # on time (and the fastest commit seen: 0.5 ms)
    assert allowance.allowed(0.0) == 8
    assert not allowance.acknowledged(12.0, 0.5, running=1)  # one event running: fewer cannot run
    assert allowance.acknowledged(12.0, 1.0, running=8)
    assert allowance.allowed(1.0) == int(8 * DECREASE) == 5
    # A burst of late acknowledgements within the cooldown is one congestion event.
    assert not allowance.acknowledged(30.0, 1.0 + COOLDOWN_SECONDS / 2, running=8)
    assert allowance.allowed(1.0 + COOLDOWN_SECONDS / 2) == 5
    # Each later one cuts again, never below one event.
    now = 1.0
    for _ in range(20):
        now += COOLDOWN_SECONDS
        allowance.acknowledged(1.0, now, running=8)  # keeps the fastest recent commit low
        allowance.acknowledged(50.0, now, running=8)
    assert allowance.allowed(now) == 1
    # Recovery is steady: one event back every 1 / RECOVERY_PER_SECOND seconds, up to the ceiling.
    assert allowance.allowed(now + 1.5 / RECOVERY_PER_SECOND) == 2
    assert allowance.allowed(now + 10.0) == 8


def test_on_a_slow_disk_the_target_follows_what_an_undisturbed_commit_costs() -> None:
    allowance = WorkerAllowance(8, target_ms=4)
    now = 0.0
    for _ in range(50):  # every commit takes 9-11 ms: the disk's fsync, not the workers
        now += 0.02
        assert not allowance.acknowledged(9.0 + (now * 100) % 2, now, running=8)
    assert allowance.allowed(now) == 8
    assert allowance.acknowledged(40.0, now + 0.02, running=8)  # well beyond twice the fastest: the workers
    assert allowance.allowed(now + 0.02) == 5


@dataclass
class StubQueue:
    """Pending events to hand out: what the pool asked for and got."""

    pending: int
    asked: list[int] = field(default_factory=list)

    async def claim(self, owner: str, limit: int) -> list[InboxItem]:
        self.asked.append(limit)
        take = min(limit, self.pending)
        self.pending -= take
        return [
            InboxItem(f"ibx{self.pending + i}", owner, "chn", f"k{i}", "message", "c", 0, "{}", 1, None, 0)
            for i in range(take)
        ]


@dataclass
class BlockingWorker:
    release: asyncio.Event = field(default_factory=asyncio.Event)
    running: int = 0
    peak: int = 0
    done: int = 0

    async def process(self, item: InboxItem) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
            self.done += 1


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_pool_runs_fewer_events_after_slow_acknowledgements_and_all_again_later() -> None:
    clock = [100.0]
    queue, worker = StubQueue(pending=40), BlockingWorker()
    metrics = Metrics.create()
    pool = WorkerPool(
        cast(InboxQueue, queue),
        cast(Any, worker),
        concurrency=8,
        ack_target_ms=4,
        metrics=metrics,
        monotonic=lambda: clock[0],
    )
    pool.start()
    try:
        await settle()
        assert worker.running == 8
        for _ in range(10):  # a run of deliveries whose commits waited 20 ms, one per cooldown
            clock[0] += COOLDOWN_SECONDS
            pool.acknowledged(1.0)
            pool.acknowledged(20.0)
        assert pool.allowed() == 1
        assert metrics.registry.get_sample_value("nexus_inbox_worker_limit") == 1
        # The running events finish; new ones start one at a time: the backlog still moves.
        worker.release.set()
        worker.release = asyncio.Event()
        await settle()
        assert worker.running == 1
        # Acknowledgements are on time again: the allowance grows back with time.
        clock[0] += 10.0
        assert pool.allowed() == 8
        pool.wake()
        await settle()
        assert worker.running == 8
    finally:
        worker.release.set()
        await pool.stop()
    assert worker.peak == 8


async def test_without_a_target_the_pool_never_gives_way() -> None:
    queue, worker = StubQueue(pending=20), BlockingWorker()
    pool = WorkerPool(cast(InboxQueue, queue), cast(Any, worker), concurrency=4)
    pool.acknowledged(10_000.0)
    pool.start()
    try:
        await settle()
        assert worker.running == 4
    finally:
        worker.release.set()
        await pool.stop()
