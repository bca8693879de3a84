"""The worker pool: claims inbox events and runs them with bounded concurrency.

A webhook commit wakes it at once; otherwise it polls, which is also how retries that come due and leases left
by a crashed process are picked up. Every running task is kept in a set and drained on shutdown, never
fire-and-forget.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

import structlog

from core.channel_worker import ChannelWorker
from core.metrics import Metrics
from core.queue import InboxItem, InboxQueue

log = structlog.get_logger("core.worker_pool")


class WorkerPool:
    def __init__(
        self,
        queue: InboxQueue,
        worker: ChannelWorker,
        *,
        concurrency: int,
        poll_seconds: float = 0.5,
        metrics: Metrics | None = None,
    ) -> None:
        self._queue = queue
        self._metrics = metrics or Metrics.create()
        self._worker = worker
        self._concurrency = concurrency
        self._poll = poll_seconds
        self._owner = f"worker-{secrets.token_hex(4)}"
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._concurrency > 0:
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="worker-pool")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, drain_seconds: float = 20.0) -> None:
        """Stop claiming, let running events finish (their leases cover a crash if they cannot)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=drain_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            free = self._concurrency - len(self._running)
            claimed: list[InboxItem] = []
            if free > 0:
                try:
                    claimed = await self._queue.claim(self._owner, free)
                except Exception:
                    log.exception("inbox_claim_failed")
            for item in claimed:
                task = asyncio.get_running_loop().create_task(self._timed(item), name=f"inbox-{item.id}")
                self._running.add(task)
                task.add_done_callback(self._done)
            if claimed and len(claimed) == free:
                await asyncio.sleep(0)  # more may be waiting: claim again as soon as a slot frees
                if len(self._running) >= self._concurrency:
                    await self._wait()
                continue
            await self._wait()

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll)
        self._wake.clear()

    async def _timed(self, item: InboxItem) -> None:
        started = time.monotonic()
        try:
            await self._worker.process(item)
        finally:
            self._metrics.event_seconds.labels(item.kind).observe(time.monotonic() - started)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free, and the conversation it held may have a next event
