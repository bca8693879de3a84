"""The durable webhook inbox and its group-committing writer.

A webhook answers 200 only after every event of its body is committed. Committing each delivery on its own
would cost one fsync per request (synchronous=FULL), so concurrent deliveries are gathered by one writer task
and committed together: each request waits for the commit that holds its rows, and a burst of N deliveries
costs one fsync instead of N. Duplicates (Meta's retries) are dropped by UNIQUE (channel_id, event_key).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from core.clock import Clock
from core.storage.db import Database, ThreadTransaction

log = structlog.get_logger("core.inbox")

# Enough to drain a burst in one commit without holding the write lock for long.
MAX_BATCH_DELIVERIES = 256
# Parameters per IN (...) lookup: well under SQLite's and PostgreSQL's limits.
# channels.last_delivery_at is a status display: refreshed at most this often per channel, so a burst of commits
# does not pay for rewriting the same row each time.
DELIVERY_MARK_MS = 1000
_ID_CHUNK = 500

_INSERT_EVENT = """INSERT INTO inbox (id, channel_id, event_key, kind, customer_id, platform_ts, event, state,
    arrival, next_attempt_at, received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (channel_id, event_key) DO NOTHING"""
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
class _Pending:
    rows: Sequence[InboxRow]
    unrouted: Sequence[UnroutedRow]
    done: asyncio.Future[WriteResult]


class InboxWriter:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._arrival = 0  # strictly increasing: orders events with equal platform timestamps as they arrived
        self.commits = 0  # how many transactions carried how many deliveries: for benchmarks
        self.deliveries = 0
        self._marked: dict[str, int] = {}  # channel id -> last_delivery_at this writer last stored

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="inbox-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():  # nothing may wait forever on a writer that is gone
            pending = self._queue.get_nowait()
            if not pending.done.done():
                pending.done.set_exception(RuntimeError("the service is shutting down"))

    async def write(self, rows: Sequence[InboxRow], unrouted: Sequence[UnroutedRow]) -> WriteResult:
        """Return once `rows` and `unrouted` are committed (durably), or raise if the commit failed."""
        if self._task is None or self._task.done():
            raise RuntimeError("the inbox writer is not running")
        done: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(rows, unrouted, done))
        return await asyncio.shield(done)  # a client hanging up must not cancel the commit for everyone

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH_DELIVERIES and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._commit(batch)
            except Exception:
                if len(batch) == 1:
                    log.exception("inbox_commit_failed")
                    _settle(batch[0], error=True)
                    continue
                # One bad delivery must not fail the others it shared a commit with: commit them one by one.
                for pending in batch:
                    try:
                        [result] = await self._commit([pending])
                    except Exception:
                        log.exception("inbox_commit_failed")
                        _settle(pending, error=True)
                    else:
                        _settle(pending, result)
                continue
            for pending, result in zip(batch, results, strict=True):
                _settle(pending, result)

    def _due_marks(self, rows: Sequence[InboxRow], now: int) -> list[str]:
        """Channels of this batch whose last_delivery_at is older than DELIVERY_MARK_MS (or never set by us)."""
        channels = {r.channel_id for r in rows}
        return sorted(c for c in channels if c not in self._marked or now - self._marked[c] >= DELIVERY_MARK_MS)

    def _next_arrival(self, now_ms: int) -> int:
        self._arrival = max(self._arrival + 1, now_ms * 1000)
        return self._arrival

    async def _commit(self, batch: list[_Pending]) -> list[WriteResult]:
        """One transaction, one INSERT statement for every event of the batch: a round trip to the database
        thread costs more than the rows themselves."""
        now = self._clock.now_ms()
        rows = [row for pending in batch for row in pending.rows]
        unrouted = [u for pending in batch for u in pending.unrouted]
        marks = self._due_marks(rows, now)
        events = [(*_event_values(r), self._next_arrival(now), now, now, now) for r in rows]
        strays = [(u.id, u.platform, u.external_id, u.kind, u.reason, u.event_json, now) for u in unrouted]
        ids = [r.id for r in rows]

        def store(tx: ThreadTransaction) -> set[str]:
            if events:
                tx.execute_many(_INSERT_EVENT, events)
                _mark_delivered(tx, marks, now)
            if strays:
                tx.execute_many(_INSERT_UNROUTED, strays)
            # A duplicate keeps the row already there, so only our fresh ids that exist now were stored.
            return _existing(tx, ids)

        # One hop to the database thread for the whole batch; a webhook is waiting to answer Meta (urgent).
        stored_ids = await self._db.run(store, urgent=True)
        self._marked.update(dict.fromkeys(marks, now))  # only once committed
        self.commits += 1
        self.deliveries += len(batch)
        results = []
        for pending in batch:
            stored = sum(1 for r in pending.rows if r.id in stored_ids)
            results.append(WriteResult(stored, len(pending.rows) - stored, len(pending.unrouted)))
        return results


def _settle(pending: _Pending, result: WriteResult | None = None, *, error: bool = False) -> None:
    if pending.done.done():
        return
    if error or result is None:
        pending.done.set_exception(RuntimeError("the inbox could not store this delivery"))
    else:
        pending.done.set_result(result)


def _event_values(r: InboxRow) -> tuple[object, ...]:
    return (r.id, r.channel_id, r.event_key, r.kind, r.customer_id, r.platform_ts, r.event_json, r.state)


def _mark_delivered(tx: ThreadTransaction, channel_ids: list[str], now: int) -> None:
    """channels.last_delivery_at for the status API: one statement for the batch, in the same commit, so it
    costs the acknowledgement one index lookup per channel and never a transaction of its own."""
    for start in range(0, len(channel_ids), _ID_CHUNK):
        chunk = channel_ids[start : start + _ID_CHUNK]
        placeholders = ", ".join("?" * len(chunk))
        tx.execute(f"UPDATE channels SET last_delivery_at = ? WHERE id IN ({placeholders})", (now, *chunk))  # noqa: S608


def _existing(tx: ThreadTransaction, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        placeholders = ", ".join("?" * len(chunk))
        rows = tx.fetch_all(f"SELECT id FROM inbox WHERE id IN ({placeholders})", chunk)  # noqa: S608
        found.update(row["id"] for row in rows)
    return found
