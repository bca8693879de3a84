"""The writer connection's lock, with a fast lane.

Webhook acknowledgements wait on the inbox commit, while workers run many short transactions; with a plain
FIFO lock an acknowledgement queues behind every worker transaction already waiting. Urgent waiters (the inbox
writer) are served before ordinary ones, so an ack waits for at most the one transaction in progress. Ordinary
waiters still make progress: the inbox writer batches, so it takes the lock at most once per commit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WriteLock:
    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._ordinary: deque[asyncio.Future[None]] = deque()

    @property
    def busy(self) -> bool:
        """Held, or waited for."""
        return self._held or bool(self._urgent or self._ordinary)

    @asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if not self._held and not self._urgent and not self._ordinary:
            self._held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._ordinary).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the lock was handed to us just as we were cancelled: pass it on
            else:
                queue = self._urgent if urgent else self._ordinary
                if waiter in queue:  # _release may already have popped it (cancelled in the same tick)
                    queue.remove(waiter)
            raise

    def _release(self) -> None:
        # Hand the lock straight to the next waiter (it stays held), urgent ones first.
        for queue in (self._urgent, self._ordinary):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._held = False
