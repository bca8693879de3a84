"""The worker pool: claims inbox events and runs them with bounded concurrency.

A webhook commit wakes it at once; otherwise it polls, which is also how retries that come due and leases left
by a crashed process are picked up. While deliveries are arriving, fewer events run when acknowledgements are
slowed (core/ack_pressure.py). Every running task is kept in a set and drained on shutdown, never
fire-and-forget.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable

import structlog

from core.ack_pressure import WorkerAllowance
from core.channel_worker import ChannelWorker
from core.metrics import Metrics
from core.storage.inbox_queue import InboxItem, InboxQueue, LeaseLost

log = structlog.get_logger("core.worker_pool")

# How long a stop waits for a claim it cut off to commit and for its events to go back.
_GIVE_BACK_SECONDS = 2.0


class WorkerPool:
    def __init__(
        self,
        queue: InboxQueue,
        worker: ChannelWorker,
        *,
        concurrency: int,
        poll_seconds: float = 0.5,
        ack_target_ms: float = 0.0,
        settle_seconds: float = 0.0,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._metrics = metrics or Metrics.create()
        self._worker = worker
        self._concurrency = concurrency
        self._poll = poll_seconds
        self._settle = settle_seconds
        self._settling: asyncio.TimerHandle | None = None
        self._rung_again = False
        self._owner = f"worker-{secrets.token_hex(4)}"
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        # With a target, the pool gives way to webhook acknowledgements whose commits it slows.
        self._allowance = WorkerAllowance(concurrency, ack_target_ms) if ack_target_ms > 0 else None
        self._monotonic = monotonic
        self._metrics.worker_limit.set_function(self.allowed)

    def start(self) -> None:
        if self._concurrency > 0:
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="worker-pool")

    def wake(self) -> None:
        """Events were stored: they are due once they have settled (INBOX_SETTLE_MS), so look then. Rung once per
        webhook commit: rings while a look is scheduled are covered by one more look a settle time after that one
        (two timers for a burst, not one per delivery; each ring is still followed by a look once it settled)."""
        if self._settle <= 0:
            self._wake.set()
        elif self._settling is None:
            self._settling = asyncio.get_running_loop().call_later(self._settle, self._settled)
        else:
            self._rung_again = True

    def _settled(self) -> None:
        self._settling = None
        self._wake.set()
        if self._rung_again:
            self._rung_again = False
            self._settling = asyncio.get_running_loop().call_later(self._settle, self._settled)

    async def stop(self, drain_seconds: float = 20.0) -> None:
        """Stop claiming, let running events finish (their leases cover a crash if they cannot)."""
        if self._settling is not None:
            self._settling.cancel()
            self._settling = None
        if self._loop_task is not None:
            self._loop_task.cancel()
            # gather, not suppress(CancelledError): a cancel of stop() itself (a shutdown's deadline) must go on.
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=drain_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            free = self.allowed() - len(self._running)
            claimed: list[InboxItem] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception:
                    log.exception("inbox_claim_failed")
            for item in claimed:
                task = asyncio.get_running_loop().create_task(self._timed(item), name=f"inbox-{item.id}")
                self._running.add(task)
                task.add_done_callback(self._done)
            if claimed and len(claimed) == free:
                await asyncio.sleep(0)  # more may be waiting: claim again as soon as a slot frees
                if len(self._running) >= self.allowed():
                    await self._wait()
                continue
            await self._wait()

    async def _claim(self, limit: int) -> list[InboxItem]:
        """Claim up to `limit` events. A claim commits even when stop() cancels the loop meanwhile (a database
        write, once started, is not cut off): what it leased is then given back at once, untouched, rather than
        left under a lease that a restarted process would have to wait out."""
        claiming = asyncio.ensure_future(self._queue.claim(self._owner, limit))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            await self._give_back(claiming)
            raise

    async def _give_back(self, claiming: asyncio.Future[list[InboxItem]]) -> None:
        """What a claim cut off by a stop leased, back in the queue. Bounded: a stop must not wait on a claim stuck
        behind the database. Past the bound the claim is cancelled (a commit already under way still completes,
        and the leases it took then run out before a restarted process answers those events)."""
        try:
            async with asyncio.timeout(_GIVE_BACK_SECONDS):
                for item in await asyncio.shield(claiming):
                    with contextlib.suppress(LeaseLost):
                        await self._queue.give_back(item)
        except TimeoutError:
            log.warning("inbox_give_back_timed_out", seconds=_GIVE_BACK_SECONDS)
        except Exception:
            log.exception("inbox_give_back_failed")
        finally:
            claiming.cancel()  # nothing once it is done; else (the bound, a second cancel) it stops waiting

    def allowed(self) -> int:
        """Events that may run at once now."""
        if self._allowance is None:
            return self._concurrency
        return self._allowance.allowed(self._monotonic())

    def acknowledged(self, commit_ms: float) -> None:
        """A webhook delivery waited `commit_ms` for its inbox commit: the pool gives way if that was too long.
        Events already running finish; fewer new ones start until acknowledgements are on time again."""
        if self._allowance is not None:
            self._allowance.acknowledged(commit_ms, self._monotonic(), running=len(self._running))

    async def _wait(self) -> None:
        # Not asyncio.wait_for: on Python 3.11 it loses a cancellation that arrives once the event is set (a wake-up
        # at the moment of a stop), and the pool would go on claiming while the shutdown waits for it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._poll):
                await self._wake.wait()
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
