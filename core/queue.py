"""Working the inbox: claim with leases, one event in flight per conversation, in platform order.

An event is claimable when it is pending, due, not under a live lease, and no earlier pending event of the same
conversation (channel + customer) exists: so a conversation's events are handled strictly one after another in
the platform's timestamp order, and one waiting in retry backoff holds back the ones after it. Leases expire:
work held by a process that died is claimed again by the next worker once its lease runs out.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import Clock
from core.storage.db import Database, Row, Transaction

_CLAIMABLE = """SELECT i.id FROM inbox i
    WHERE i.state = 'pending' AND i.next_attempt_at <= ? AND (i.lease_expires_at IS NULL OR i.lease_expires_at <= ?)
      AND NOT EXISTS (
        SELECT 1 FROM inbox j
        WHERE j.channel_id = i.channel_id AND j.customer_id = i.customer_id AND j.state = 'pending'
          AND (j.platform_ts < i.platform_ts
               OR (j.platform_ts = i.platform_ts AND (j.received_at < i.received_at
                   OR (j.received_at = i.received_at AND j.id < i.id)))))
    ORDER BY i.platform_ts, i.received_at, i.id
    LIMIT ?"""

_ITEM = """SELECT id, channel_id, event_key, kind, customer_id, platform_ts, event, attempts, reply_text,
    reply_parts_sent FROM inbox WHERE id = ?"""


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: str
    channel_id: str
    event_key: str
    kind: str
    customer_id: str | None
    platform_ts: int
    event_json: str
    attempts: int  # including the one now starting
    reply_text: str | None  # generated earlier and stored before sending: never generated twice
    reply_parts_sent: int


def _item(row: Row) -> InboxItem:
    return InboxItem(
        id=row["id"],
        channel_id=row["channel_id"],
        event_key=row["event_key"],
        kind=row["kind"],
        customer_id=row["customer_id"],
        platform_ts=int(row["platform_ts"]),
        event_json=row["event"],
        attempts=int(row["attempts"]),
        reply_text=row["reply_text"],
        reply_parts_sent=int(row["reply_parts_sent"]),
    )


class InboxQueue:
    def __init__(self, db: Database, clock: Clock, *, lease_ms: int) -> None:
        self._db = db
        self._clock = clock
        self._lease_ms = lease_ms

    async def claim(self, owner: str, limit: int) -> list[InboxItem]:
        now = self._clock.now_ms()
        claimed = []
        async with self._db.transaction() as tx:
            for row in await tx.fetch_all(_CLAIMABLE, (now, now, limit)):
                # Conditional: a second claimer (another process) that raced us finds the lease taken.
                updated = await tx.fetch_one(
                    "UPDATE inbox SET lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1, updated_at = ?"
                    " WHERE id = ? AND state = 'pending' AND (lease_expires_at IS NULL OR lease_expires_at <= ?)"
                    " RETURNING id",
                    (owner, now + self._lease_ms, now, row["id"], now),
                )
                if updated is not None:
                    item = await tx.fetch_one(_ITEM, (row["id"],))
                    assert item is not None
                    claimed.append(_item(item))
        return claimed

    async def store_reply(self, tx: Transaction, item_id: str, text: str) -> None:
        """Inside the turn's accounting transaction: the reply is saved with its charge, before any send."""
        await tx.execute(
            "UPDATE inbox SET reply_text = ?, updated_at = ? WHERE id = ?", (text, self._clock.now_ms(), item_id)
        )

    async def parts_sent(self, item_id: str, count: int) -> None:
        await self._db.execute(
            "UPDATE inbox SET reply_parts_sent = ?, updated_at = ? WHERE id = ?",
            (count, self._clock.now_ms(), item_id),
        )

    async def finish(self, item_id: str, state: str, note: str | None = None) -> None:
        """done | skipped | dead: the event leaves the queue and releases its conversation."""
        await self._db.execute(
            "UPDATE inbox SET state = ?, last_error = COALESCE(?, last_error), lease_owner = NULL,"
            " lease_expires_at = NULL, updated_at = ? WHERE id = ?",
            (state, note, self._clock.now_ms(), item_id),
        )

    async def retry_later(self, item_id: str, delay_ms: int, error: str) -> None:
        now = self._clock.now_ms()
        await self._db.execute(
            "UPDATE inbox SET next_attempt_at = ?, last_error = ?, lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = ? WHERE id = ?",
            (now + delay_ms, error, now, item_id),
        )

    async def depth(self) -> int:
        row = await self._db.fetch_one("SELECT COUNT(*) AS n FROM inbox WHERE state = 'pending'")
        return int(row["n"]) if row else 0

    async def purge(self, *, older_than_ms: int) -> int:
        """Drop finished events received before the cutoff; pending ones are never purged.

        The cutoff must stay beyond Meta's retry horizon (7 days for WhatsApp): an event's row is what
        recognises a late retry of it as a duplicate.
        """
        return await self._db.execute(
            "DELETE FROM inbox WHERE state <> 'pending' AND received_at < ?", (self._clock.now_ms() - older_than_ms,)
        )
