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

Besides the rings, one report travels the same way: how long this process's urgent commits (the webhook's inbox
commits, each a delivery Meta is waiting on) took. `CommitWaitReports` sums them up per REPORT_INTERVAL_SECONDS
(the fastest and the slowest) into one NOTIFY; worker processes hear them and give way as a worker in the same
process would (core/ack_pressure.py). Only processes that acknowledge webhooks send them, only while they do.

Channel names carry the schema, so deployments that share a database in separate schemas do not hear each other.
A notification's payload is the sending process's origin, then for a report a space and what it says.
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
# One report of urgent commit waits per this interval at most: 50 NOTIFYs a second under a stream of webhooks.
REPORT_INTERVAL_SECONDS = 0.02
# The report topic: its listeners get the payload (not a ring, so not in doorbell.TOPICS).
COMMIT_WAITS = "commit_waits"
# After a report the server refused, the next is sent no sooner than this; a connection attempt waits this long.
REPORT_RETRY_SECONDS = 5.0
REPORT_CONNECT_TIMEOUT_SECONDS = 5

# Rings closer together than this share one NOTIFY. Well under the inbox's settle window (INBOX_SETTLE_MS, 50 ms
# by default), which a woken worker waits anyway before it claims.
NOTIFY_INTERVAL_SECONDS = 0.01


class PostgresDoorbell:
    def __init__(self, url: str, send: SendNotify) -> None:
        self._url = url
        self._send = send
        self._origin = secrets.token_hex(6)  # this process's rings, recognised when they come back
        # Sent as current_schema() || suffix (the server knows the schema); the listener learns it on connecting.
        self._suffixes = {topic: f".gateway.{topic}" for topic in (*TOPICS, COMMIT_WAITS)}
        self._subscribers = Subscribers()
        self._readers: list[Callable[[str], None]] = []  # of COMMIT_WAITS reports
        self._reporting: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._reports_paused_until = 0.0  # loop time; after a failed report
        self._closed = False
        self._listening: asyncio.Task[None] | None = None
        self._sending: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self.listening = asyncio.Event()  # set while LISTEN is in place (tests wait for it)

    def subscribe(self, topic: str, listener: Listener) -> None:
        self._subscribers.add(topic, listener)
        if self._listening is None:
            self._listening = asyncio.get_running_loop().create_task(self._listen(), name="doorbell-listener")

    def read_reports(self, listener: Callable[[str], None]) -> None:
        """Call `listener` with what each report of another process says (COMMIT_WAITS)."""
        self._readers.append(listener)
        if self._listening is None:
            self._listening = asyncio.get_running_loop().create_task(self._listen(), name="doorbell-listener")

    async def report(self, what: str) -> None:
        """Tell the other processes `what` (a COMMIT_WAITS report) now; the caller keeps the pace. Never raises.

        On a connection of its own, opened on the first report: a report matters most when this process is
        overloaded, and then its pooled connections have a queue of webhook commits waiting for them. When the
        server refuses it (too many connections, say), reports pause for REPORT_RETRY_SECONDS rather than knock
        again 50 times a second."""
        loop = asyncio.get_running_loop()
        if self._closed or loop.time() < self._reports_paused_until:
            return
        try:
            if self._reporting is None or self._reporting.closed:
                self._reporting = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=REPORT_CONNECT_TIMEOUT_SECONDS
                )
            await self._reporting.execute(
                "SELECT pg_notify(current_schema() || %s, %s)", (self._suffixes[COMMIT_WAITS], f"{self._origin} {what}")
            )
        except Exception as exc:  # a lost report costs the workers one chance to give way, nothing more
            log.warning("doorbell_report_failed", error=type(exc).__name__, paused_seconds=REPORT_RETRY_SECONDS)
            self._reports_paused_until = loop.time() + REPORT_RETRY_SECONDS
            await self._stop_reporting()

    async def _stop_reporting(self) -> None:
        if self._reporting is not None:
            conn, self._reporting = self._reporting, None
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def ring(self, topic: str) -> None:
        self._subscribers.call(topic)
        if topic in self._sending:
            self._again.add(topic)  # folded into one more send once this one is out
            return
        self._sending[topic] = asyncio.get_running_loop().create_task(self._notify(topic))

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._listening, *self._sending.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # a cancel of close() itself still goes through
        await self._stop_reporting()

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

    def _read(self, what: str) -> None:
        for reader in self._readers:
            try:
                reader(what)
            except Exception:
                log.exception("doorbell_report_reader_failed")

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
                        origin, _, what = notice.payload.partition(" ")
                        if origin == self._origin or notice.channel not in topics:
                            continue
                        if (topic := topics[notice.channel]) == COMMIT_WAITS:
                            self._read(what)
                        else:
                            self._subscribers.call(topic)
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


class CommitWaitReports:
    """This process's urgent commits, told to the others: each wait is passed to this process's own listeners at
    once, and summed up (fastest, slowest) into one report per REPORT_INTERVAL_SECONDS for the other processes,
    whose listeners hear the fastest and then the slowest (core/ack_pressure.py keeps the fastest as its baseline
    and judges the slowest)."""

    def __init__(self, doorbell: PostgresDoorbell, interval: float = REPORT_INTERVAL_SECONDS) -> None:
        self._doorbell = doorbell
        self._interval = interval
        self._listeners: list[Callable[[float], None]] = []
        self._fastest = float("inf")
        self._slowest = 0.0
        self._sending: asyncio.Task[None] | None = None
        self._heard = False
        self._closed = False

    def watch(self, listener: Callable[[float], None]) -> None:
        """`listener(wait_ms)` for every urgent commit of this process and those another process reports."""
        self._listeners.append(listener)
        if not self._heard:
            self._heard = True
            self._doorbell.read_reports(self._heard_report)

    def record(self, wait_ms: float) -> None:
        self._tell(wait_ms)
        self._fastest, self._slowest = min(self._fastest, wait_ms), max(self._slowest, wait_ms)
        if self._sending is None and not self._closed:
            self._sending = asyncio.get_running_loop().create_task(self._send(), name="commit-wait-report")

    async def close(self) -> None:
        self._closed = True
        if self._sending is not None:
            self._sending.cancel()
            await asyncio.gather(self._sending, return_exceptions=True)

    async def _send(self) -> None:
        """One report per interval while waits keep coming, those recorded during a send included."""
        try:
            while self._slowest or self._fastest != float("inf"):
                await asyncio.sleep(self._interval)  # what comes meanwhile goes out with this report
                fastest, slowest = self._fastest, self._slowest
                self._fastest, self._slowest = float("inf"), 0.0
                await self._doorbell.report(f"{fastest:.3f} {slowest:.3f}")
        finally:
            self._sending = None

    def _heard_report(self, what: str) -> None:
        try:
            waits = [float(part) for part in what.split()]
        except ValueError:
            log.warning("commit_wait_report_unreadable", report=what[:100])
            return
        for wait_ms in waits[:2]:
            if 0.0 <= wait_ms < 3_600_000.0:
                self._tell(wait_ms)

    def _tell(self, wait_ms: float) -> None:
        for listener in self._listeners:
            try:
                listener(wait_ms)
            except Exception:
                log.exception("commit_wait_listener_failed")


class PostgresLeadership:
    """The leader holds `pg_advisory_lock` on a connection kept for that alone (see core/storage/leadership.py). A
    process that does not lead keeps its connection too and asks again on it at each look: the housekeeping tasks
    look every second, and a new server connection each time would cost the server a process start."""

    def __init__(self, url: str, name: str) -> None:
        self._url = url
        self._name = name
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._checking = asyncio.Lock()  # tasks that look at once share the connection, one statement at a time
        self.leading = False

    async def check(self) -> bool:
        async with self._checking:
            if self._conn is None:
                try:
                    self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                except psycopg.Error as exc:
                    log.warning("leadership_check_failed", error=type(exc).__name__)
                    self.leading = False
                    return False
            try:
                if self.leading:
                    await self._conn.execute("SELECT 1")  # still connected, so still holding the lock
                else:
                    row = await (
                        await self._conn.execute(
                            "SELECT pg_try_advisory_lock(hashtextextended(current_schema() || %s, 0))",
                            (f":{self._name}",),
                        )
                    ).fetchone()
                    if row is not None and row[0]:
                        self.leading = True
                        log.info("leadership_taken", name=self._name)
            except psycopg.Error:  # the server went away: nobody's lock is ours; a new connection at the next look
                await self._drop()
            except BaseException:  # cancelled (shutdown) mid-statement: never leave the connection behind
                await self._drop()
                raise
            return self.leading

    async def close(self) -> None:
        await self._drop()

    async def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self.leading = False
            with contextlib.suppress(psycopg.Error):
                await conn.close()
