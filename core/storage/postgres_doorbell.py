"""What coordinates processes on PostgreSQL besides the data: the doorbell (NOTIFY to ring, one LISTEN connection
per process to hear) and leadership (a session advisory lock).

A ring calls this process's subscribers at once and sends `pg_notify` on a pooled connection in autocommit
(after the store's commit, never inside it). Rings of one topic that come while one is being sent are folded
into the next send, and that send waits until NOTIFY_INTERVAL_SECONDS after the previous one started: a stream of
webhook commits costs at most one NOTIFY per interval, not one per round trip. Each NOTIFY is a transaction of
its own on the server, committed under the lock that every NOTIFYing commit of the database takes in turn; at
1,000 deliveries/s the round trip alone would let several hundred a second through. A lone ring goes out at
once. The listener ignores its own process's notifications (it has called its subscribers already) and
reconnects with a backoff if its connection drops; meanwhile everyone polls.

Channel names carry the schema, so deployments that share a database in separate schemas do not hear each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable

import psycopg
import structlog

from core.storage.doorbell import TOPICS, Listener, Subscribers

# How a ring reaches the server: `pg_notify(channel, payload)` on one of the pool's connections.
SendNotify = Callable[[str, str], Awaitable[None]]

log = structlog.get_logger("core.storage.postgres_doorbell")

RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)
# Rings closer together than this share one NOTIFY. Well under the inbox's settle window (INBOX_SETTLE_MS, 50 ms
# by default), which a woken worker waits anyway before it claims.
NOTIFY_INTERVAL_SECONDS = 0.01


class PostgresDoorbell:
    def __init__(self, url: str, send: SendNotify) -> None:
        self._url = url
        self._send = send
        self._origin = secrets.token_hex(6)  # this process's rings, recognised when they come back
        # Sent as current_schema() || suffix (the server knows the schema); the listener learns it on connecting.
        self._suffixes = {topic: f".gateway.{topic}" for topic in TOPICS}
        self._subscribers = Subscribers()
        self._listening: asyncio.Task[None] | None = None
        self._sending: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self.listening = asyncio.Event()  # set while LISTEN is in place (tests wait for it)

    def subscribe(self, topic: str, listener: Listener) -> None:
        self._subscribers.add(topic, listener)
        if self._listening is None:
            self._listening = asyncio.get_running_loop().create_task(self._listen(), name="doorbell-listener")

    async def ring(self, topic: str) -> None:
        self._subscribers.call(topic)
        if topic in self._sending:
            self._again.add(topic)  # folded into one more send once this one is out
            return
        self._sending[topic] = asyncio.get_running_loop().create_task(self._notify(topic))

    async def close(self) -> None:
        tasks = [t for t in (self._listening, *self._sending.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _notify(self, topic: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                try:
                    await self._send(self._suffixes[topic], self._origin)
                except Exception as exc:  # the pool is exhausted or the server gone: polling makes up for it
                    log.warning("doorbell_ring_failed", topic=topic, error=type(exc).__name__)
                if topic not in self._again:
                    return
                await asyncio.sleep(max(0.0, started + NOTIFY_INTERVAL_SECONDS - loop.time()))
                self._again.discard(topic)  # the next send covers every ring until now
        finally:
            self._sending.pop(topic, None)

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                try:
                    row = await (await conn.execute("SELECT current_schema()")).fetchone()
                    schema = str(row[0]) if row is not None else "public"
                    topics = {schema + suffix: topic for topic, suffix in self._suffixes.items()}
                    for channel in topics:
                        await conn.execute(f'LISTEN "{channel}"')
                    self.listening.set()
                    if failures:  # deaf for a while: whatever rang meanwhile, look now
                        for topic in TOPICS:
                            self._subscribers.call(topic)
                    failures = 0
                    async for notice in conn.notifies():
                        if notice.payload != self._origin and notice.channel in topics:
                            self._subscribers.call(topics[notice.channel])
                finally:
                    self.listening.clear()
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc  # closing: the cancellation came back as an error
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.warning("doorbell_listener_reconnecting", error=type(exc).__name__, in_seconds=delay)
                await asyncio.sleep(delay)


class PostgresLeadership:
    """The leader holds `pg_advisory_lock` on a connection kept for that alone (see core/storage/leadership.py)."""

    def __init__(self, url: str, name: str) -> None:
        self._url = url
        self._name = name
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self.leading = False

    async def check(self) -> bool:
        if self._conn is not None:
            try:
                await self._conn.execute("SELECT 1")  # still connected, so still holding the lock
            except psycopg.Error:
                await self._drop()
        if self._conn is None:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            except psycopg.Error as exc:
                log.warning("leadership_check_failed", error=type(exc).__name__)
                self.leading = False
                return False
            try:
                row = await (
                    await conn.execute(
                        "SELECT pg_try_advisory_lock(hashtextextended(current_schema() || %s, 0))", (f":{self._name}",)
                    )
                ).fetchone()
            except BaseException:  # cancelled (shutdown) or the server went away: never leave the connection open
                await conn.close()
                raise
            if row is not None and row[0]:
                self._conn = conn
                log.info("leadership_taken", name=self._name)
            else:
                await conn.close()
        self.leading = self._conn is not None
        return self.leading

    async def close(self) -> None:
        await self._drop()

    async def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self.leading = False
            with contextlib.suppress(psycopg.Error):
                await conn.close()
