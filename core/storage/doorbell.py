"""The doorbell: a store that committed a change rings it; whoever subscribed, in any process, hears it at once.

Three topics: `inbox` (events were stored or made due: workers, look now), `channels` (a channel or its
secrets changed: reload the directory and what turns keep of channels) and `settings` (a bot, an account or a plan
changed: core/storage/recent.py; a plan made or changed: core/tokenizer_warmup.py loads its tokenizers). A ring is
a hint, never the record: the change is already committed, and everything that listens also polls (workers every
half second, the directory every 30 s, the tokenizers' warm-up every minute), so a ring lost to a broken
connection costs latency, not correctness. (What turns keep of bots, accounts, plans and channels is
the exception, bounded: it may be up to 10 s old when a ring is lost, core/storage/recent.py.)

Stores ring after their commit, never inside the transaction: on PostgreSQL a NOTIFY inside a transaction takes a
database-wide lock at commit, which would serialise every commit behind it.

`LocalDoorbell` (SQLite, one process) calls the subscribers directly. The PostgreSQL doorbell
(core/storage/postgres_doorbell.py) also sends a NOTIFY that every other process LISTENs for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger("core.storage.doorbell")

INBOX = "inbox"
CHANNELS = "channels"
SETTINGS = "settings"  # a bot, an account or a plan changed: what turns keep of them is read again
TOPICS = (INBOX, CHANNELS, SETTINGS)

Listener = Callable[[], None]


class Doorbell(Protocol):
    def subscribe(self, topic: str, listener: Listener) -> None:
        """Call `listener` (a quick, non-blocking function) whenever `topic` rings, here or in another process."""
        ...

    async def ring(self, topic: str) -> None:
        """After a commit: tell every subscriber of `topic`. Never raises (a lost ring is made up by polling)."""
        ...

    async def close(self) -> None: ...


class Subscribers:
    """The listeners of this process, per topic; one that raises is logged and the others still hear."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {topic: [] for topic in TOPICS}

    def add(self, topic: str, listener: Listener) -> None:
        self._listeners[topic].append(listener)

    def call(self, topic: str) -> None:
        for listener in self._listeners.get(topic, ()):
            try:
                listener()
            except Exception:
                log.exception("doorbell_listener_failed", topic=topic)


class LocalDoorbell:
    """One process (SQLite): a ring calls this process's subscribers; other processes on the file poll."""

    def __init__(self) -> None:
        self._subscribers = Subscribers()

    def subscribe(self, topic: str, listener: Listener) -> None:
        self._subscribers.add(topic, listener)

    async def ring(self, topic: str) -> None:
        self._subscribers.call(topic)

    async def close(self) -> None:
        return None
