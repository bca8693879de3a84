"""The durable webhook inbox writer.

A webhook answers 200 only after every event of its body is committed. Committing each delivery on its own
would cost one fsync per request (synchronous=FULL); the writer thread commits the transactions queued together
in one commit (`core/storage/writer_thread.py`), so a burst of N deliveries costs one fsync instead of N, and
each request is answered as soon as the commit holding its rows is durable. Duplicates (Meta's retries) are
dropped by UNIQUE (channel_id, event_key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


class InboxWriter:
    def __init__(self, db: Database, clock: Clock, *, settle_ms: int = 0) -> None:
        self._db = db
        self._clock = clock
        self._settle_ms = settle_ms  # an event becomes due this long after it is stored (next_attempt_at)
        self._arrival = 0  # strictly increasing: orders events with equal platform timestamps as they arrived
        self._marked: dict[str, int] = {}  # channel id -> last_delivery_at this writer last stored

    async def write(self, rows: Sequence[InboxRow], unrouted: Sequence[UnroutedRow]) -> WriteResult:
        """Return once `rows` and `unrouted` are committed (durably), or raise if the commit failed.

        One transaction per delivery, one INSERT statement for all its events, in one hop to the writer thread
        as urgent work (a webhook is waiting to answer Meta). Deliveries that arrive together share one commit
        there (`WriterThread`), each in its own savepoint, so one bad delivery never fails the others.
        """
        now = self._clock.now_ms()
        marks = self._due_marks(rows, now)
        due = now + self._settle_ms
        events = [(*_event_values(r), self._next_arrival(now), due, now, now) for r in rows]
        strays = [(u.id, u.platform, u.external_id, u.kind, u.reason, u.event_json, now) for u in unrouted]

        async def store(tx: Transaction) -> int:
            stored = 0
            if events:
                # A duplicate (Meta's retry) is ignored by ON CONFLICT: the rows changed are the events stored.
                stored = await tx.execute_many(_INSERT_EVENT, events)
                await _mark_delivered(tx, marks, now)
            if strays:
                await tx.execute_many(_INSERT_UNROUTED, strays)
            return stored

        try:
            stored = await self._db.run(store, urgent=True)
        except Exception as exc:
            # Nothing of the delivery is stored (one transaction); Meta retries on a 503 (StorageUnavailable).
            log.exception("inbox_commit_failed")
            raise StorageUnavailable("the inbox could not store this delivery; it is safe to retry") from exc
        self._marked.update(dict.fromkeys(marks, now))  # only once committed
        if stored:
            await self._db.doorbell.ring(INBOX)  # after the commit: workers in every process look (once settled)
        return WriteResult(stored, len(rows) - stored, len(unrouted))

    def _due_marks(self, rows: Sequence[InboxRow], now: int) -> list[str]:
        """Channels of this delivery whose last_delivery_at is older than DELIVERY_MARK_MS (or never set by us)."""
        channels = {r.channel_id for r in rows}
        return sorted(c for c in channels if c not in self._marked or now - self._marked[c] >= DELIVERY_MARK_MS)

    def _next_arrival(self, now_ms: int) -> int:
        self._arrival = max(self._arrival + 1, now_ms * 1000)
        return self._arrival


def _event_values(r: InboxRow) -> tuple[object, ...]:
    return (r.id, r.channel_id, r.event_key, r.kind, r.customer_id, r.platform_ts, r.event_json, r.state)


async def _mark_delivered(tx: Transaction, channel_ids: list[str], now: int) -> None:
    """channels.last_delivery_at for the status API: one statement for the delivery, in its own commit, so it
    costs the acknowledgement one index lookup per channel and never a transaction of its own."""
    for start in range(0, len(channel_ids), _ID_CHUNK):
        chunk = channel_ids[start : start + _ID_CHUNK]
        placeholders = ", ".join("?" * len(chunk))
        await tx.execute(f"UPDATE channels SET last_delivery_at = ? WHERE id IN ({placeholders})", (now, *chunk))
