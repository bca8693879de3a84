"""The durable webhook inbox writer.

A webhook answers 200 only after every event of its body is committed. Committing each delivery on its own
would cost one fsync (and on PostgreSQL one round trip) per request: deliveries that arrive while a commit is
under way are written together in the next one (`InboxWriter`), so a burst of N deliveries costs one commit
instead of N, and each request is answered as soon as the commit holding its rows is durable. Duplicates (Meta's
retries) are dropped by UNIQUE (channel_id, event_key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import structlog

from core.clock import Clock
from core.errors import StorageUnavailable
from core.storage.db import Database, Transaction
from core.storage.doorbell import INBOX

log = structlog.get_logger("core.storage.inbox")

# channels.last_delivery_at is a status display: refreshed at most this often per channel, so a burst of commits
# does not pay for rewriting the same row each time.
DELIVERY_MARK_MS = 1000
# Parameters per IN (...) lookup: well under SQLite's and PostgreSQL's limits.
_ID_CHUNK = 500

# Deliveries written in one commit at most (more wait for the next), and events per INSERT statement (12 values
# each: well under SQLite's 32,766 bound parameters).
_BATCH_DELIVERIES = 200
_BATCH_EVENTS = 100
# Commits of the inbox under way at once, each its own batch. Measured on SQLite (bench.webhooks): with one or
# two, a delivery waits behind a commit too often and the ack p99 at 1,000/s rose by 1.5-2.5 ms; with four it
# stays within a millisecond of writing each delivery alone.
_FLUSHES = 4

_INSERT_EVENTS = """INSERT INTO inbox (id, channel_id, event_key, kind, customer_id, platform_ts, event, state,
    arrival, next_attempt_at, received_at, updated_at) VALUES {values}
    ON CONFLICT (channel_id, event_key) DO NOTHING"""
_EVENT_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_UNROUTED = """INSERT INTO webhook_unrouted (id, platform, external_id, kind, reason, event, received_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)"""


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: str
    channel_id: str
    event_key: str
    kind: str
    customer_id: str | None
    platform_ts: int
    event_json: str
    state: str  # pending (to answer) | recorded (kept, not answered)


@dataclass(frozen=True, slots=True)
class UnroutedRow:
    id: str
    platform: str
    external_id: str
    kind: str
    reason: str
    event_json: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: int
    duplicates: int
    unrouted: int


@dataclass(slots=True)
class _Delivery:
    events: list[tuple[object, ...]]
    strays: list[tuple[object, ...]]
    marks: list[str]
    done: asyncio.Future[int]  # the events stored (not duplicates), once committed


class InboxWriter:
    """Deliveries that arrive while commits are under way are written together in the next one: one multi-row
    INSERT and one commit for all of them (on PostgreSQL one round trip and one WAL flush instead of one per
    delivery, two when the batch also marks a channel's last delivery or keeps unrouted ones; on SQLite one hop to
    the writer thread). Up to _FLUSHES commits run at once, so a delivery that finds one under way does not wait
    for it: it is written at once, and only when that many are in flight do deliveries queue and batch. If a batch
    fails for a reason other than the database being unavailable, each of its deliveries is written again on its
    own: one bad delivery never fails the others."""

    def __init__(self, db: Database, clock: Clock, *, settle_ms: int = 0) -> None:
        self._db = db
        self._clock = clock
        self._settle_ms = settle_ms  # an event becomes due this long after it is stored (next_attempt_at)
        self._arrival = 0  # strictly increasing: orders events with equal platform timestamps as they arrived
        self._marked: dict[str, int] = {}  # channel id -> last_delivery_at this writer last stored
        self._queued: list[_Delivery] = []
        self._flushing = 0  # flush tasks running; each leaves in the same step as its last look at the queue
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done

    async def write(self, rows: Sequence[InboxRow], unrouted: Sequence[UnroutedRow]) -> WriteResult:
        """Return once `rows` and `unrouted` are committed (durably), or raise StorageUnavailable if the commit
        failed (then nothing of this delivery is stored; Meta retries on the 503 this becomes)."""
        now = self._clock.now_ms()
        due = now + self._settle_ms
        delivery = _Delivery(
            events=[(*_event_values(r), self._next_arrival(now), due, now, now) for r in rows],
            strays=[(u.id, u.platform, u.external_id, u.kind, u.reason, u.event_json, now) for u in unrouted],
            marks=self._due_marks(rows, now),
            done=asyncio.get_running_loop().create_future(),
        )
        self._queued.append(delivery)
        if self._flushing < _FLUSHES:
            self._flushing += 1
            task = asyncio.get_running_loop().create_task(self._flush(), name="inbox-writer")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # Shielded: a webhook whose client went away still has its delivery committed with the others.
        stored = await asyncio.shield(delivery.done)
        return WriteResult(stored, len(rows) - stored, len(unrouted))

    async def _flush(self) -> None:
        """Write what is queued, then what queued meanwhile, until nothing is left. The count of running flushes
        drops in the very step that finds the queue empty (not in a done-callback a step later): a delivery queued
        after that step always finds a free slot and starts a flush of its own, so none is left waiting."""
        try:
            while self._queued:
                batch, self._queued = self._queued[:_BATCH_DELIVERIES], self._queued[_BATCH_DELIVERIES:]
                await self._commit(batch)
        finally:
            self._flushing -= 1

    async def _commit(self, batch: list[_Delivery]) -> None:
        try:
            stored = await self._store(batch)
        except StorageUnavailable as exc:  # the database cannot take any of them now: each is answered 503
            self._fail(batch, exc)
            return
        except asyncio.CancelledError as exc:  # shutting down: no webhook waits forever (run shields the commit)
            self._fail(batch, exc)
            raise
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch, exc)
                return
            for delivery in batch:  # which one? each on its own, so the good ones are stored
                await self._commit([delivery])
            return
        for delivery, count in zip(batch, stored, strict=True):
            if not delivery.done.done():
                delivery.done.set_result(count)
        if any(stored):
            await self._db.doorbell.ring(INBOX)  # after the commit: workers in every process look (once settled)

    async def _store(self, batch: list[_Delivery]) -> list[int]:
        """One transaction for the batch; the events each delivery stored (duplicates are not stored)."""
        now = self._clock.now_ms()
        events = [event for delivery in batch for event in delivery.events]
        strays = [stray for delivery in batch for stray in delivery.strays]
        marks = sorted({channel for delivery in batch for channel in delivery.marks})

        async def store(tx: Transaction) -> set[object]:
            stored: set[object] = set()
            for start in range(0, len(events), _BATCH_EVENTS):
                chunk = events[start : start + _BATCH_EVENTS]
                # A duplicate (Meta's retry) is skipped by ON CONFLICT; the ids returned are the events stored.
                rows = await tx.fetch_all(_insert_events(len(chunk)), _flat(chunk))
                stored.update(row["id"] for row in rows)
            if marks:
                await _mark_delivered(tx, marks, now)
            if strays:
                await tx.execute_many(_INSERT_UNROUTED, strays)
            return stored

        try:
            if marks or strays or len(events) > _BATCH_EVENTS:
                stored = await self._db.run(store, urgent=True)
            elif events:
                # The common case: one statement, a transaction by itself (on PostgreSQL one round trip, not two).
                rows = await self._db.execute_returning(_insert_events(len(events)), _flat(events), urgent=True)
                stored = {row["id"] for row in rows}
            else:
                stored = set()
        except Exception:
            log.exception("inbox_commit_failed", deliveries=len(batch))
            raise
        for delivery in batch:  # only once committed
            self._marked.update(dict.fromkeys(delivery.marks, now))
        return [sum(1 for event in delivery.events if event[0] in stored) for delivery in batch]

    def _fail(self, batch: list[_Delivery], exc: BaseException) -> None:
        error = StorageUnavailable("the inbox could not store this delivery; it is safe to retry")
        error.__cause__ = exc
        for delivery in batch:
            if not delivery.done.done():
                delivery.done.set_exception(error)
            delivery.done.exception()  # retrieved: a caller that went away leaves no "never retrieved" warning

    def _due_marks(self, rows: Sequence[InboxRow], now: int) -> list[str]:
        """Channels of this delivery whose last_delivery_at is older than DELIVERY_MARK_MS (or never set by us)."""
        channels = {r.channel_id for r in rows}
        return sorted(c for c in channels if c not in self._marked or now - self._marked[c] >= DELIVERY_MARK_MS)

    def _next_arrival(self, now_ms: int) -> int:
        self._arrival = max(self._arrival + 1, now_ms * 1000)
        return self._arrival


@lru_cache(maxsize=_BATCH_EVENTS)
def _insert_events(count: int) -> str:
    return _INSERT_EVENTS.format(values=", ".join([_EVENT_VALUES] * count)) + " RETURNING id"


def _flat(events: list[tuple[object, ...]]) -> list[object]:
    return [value for event in events for value in event]


def _event_values(r: InboxRow) -> tuple[object, ...]:
    return (r.id, r.channel_id, r.event_key, r.kind, r.customer_id, r.platform_ts, r.event_json, r.state)


async def _mark_delivered(tx: Transaction, channel_ids: list[str], now: int) -> None:
    """channels.last_delivery_at for the status API: one statement for the delivery, with its commit, so it
    costs the acknowledgement one index lookup per channel and never a transaction or a round trip of its own."""
    for start in range(0, len(channel_ids), _ID_CHUNK):
        chunk = channel_ids[start : start + _ID_CHUNK]
        placeholders = ", ".join("?" * len(chunk))
        await tx.defer(f"UPDATE channels SET last_delivery_at = ? WHERE id IN ({placeholders})", (now, *chunk))
