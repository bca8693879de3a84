"""Rows the message path reads on every turn and that change rarely (a bot, its account, the plan, a channel with
its secrets), kept in memory for a short while.

A store keeps one `Recent` per kind of row and clears it whenever its doorbell topic rings (core/storage/doorbell.py):
every change of such a row, in any process, rings after its commit, so the next turn reads it fresh. The rings
are hints (a process whose LISTEN connection was down hears nothing for a while), so an entry also expires after
RECENT_SECONDS whatever happens: the longest a change can go unseen. Only reads that a turn makes go through it;
the admin API reads the database, so what an operator just changed is what they see.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from core.storage.doorbell import Doorbell

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

RECENT_SECONDS = 10.0
MAX_ENTRIES = 10_000  # cleared whole when full: a process serving more bots than this reads them again


class Recent(Generic[K, V]):
    def __init__(
        self,
        doorbell: Doorbell,
        topic: str,
        *,
        seconds: float = RECENT_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._doorbell = doorbell
        self._topic = topic
        self._seconds = seconds
        self._monotonic = monotonic
        self._entries: dict[K, tuple[float, V]] = {}
        self._listening = False
        self._generation = 0  # counts clears

    async def get(self, key: K, load: Callable[[K], Awaitable[V]]) -> V:
        """The value kept for `key` if it is recent, else `load(key)` (kept unless it raises: NotFound is not)."""
        if not self._listening:  # subscribed on first use: only processes that run turns listen
            self._listening = True
            self._doorbell.subscribe(self._topic, self.clear)
        now = self._monotonic()
        kept = self._entries.get(key)
        if kept is not None and now - kept[0] < self._seconds:
            return kept[1]
        generation = self._generation
        value = await load(key)
        # A change that rang while this read was under way may not be in what it read: not kept then.
        if generation == self._generation:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
        self._generation += 1
