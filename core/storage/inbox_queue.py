"""Working the inbox: claim with leases, one event in flight per conversation, in platform order.

An event is claimable when it is pending, due, not under a live lease, and no earlier pending event of the same
conversation (channel + customer) exists: so a conversation's events are handled strictly one after another in
the platform's timestamp order (WhatsApp's are whole seconds: ties go by arrival, the order Meta listed them),
and one waiting in retry backoff holds back the ones after it. Echoes (the business side speaking) skip the
line: a human taking over must pause the bot at once, not after the backlog; and a message that came after an
echo waits for it, so it is never answered while the takeover it follows is still being recorded. Leases
expire: work held by a process that died is claimed again by the next worker once its lease runs out, and every
state change is fenced by the lease, so a worker that lost its lease cannot finish or reschedule an event another
worker now holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import Clock
from core.storage.db import Check, Database, Row, Transaction
from core.storage.doorbell import INBOX

# One statement claims: the inner SELECT picks the first claimable event of each conversation, the UPDATE leases
# them and hands them back (attempts already counted). Several processes claim at once without waiting on each
# other: on PostgreSQL the inner SELECT locks what it picks and passes over rows another claimer holds (SKIP
# LOCKED); a row another claimer leased and committed meanwhile fails the lease test when it is re-read under the
# lock. The order is total: platform timestamp, then arrival, then id (two processes' arrivals may tie).
_CLAIM = """UPDATE inbox SET lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1, updated_at = ?
    WHERE id IN (
      SELECT i.id FROM inbox i
      WHERE i.state = 'pending' AND i.next_attempt_at <= ? AND (i.lease_expires_at IS NULL OR i.lease_expires_at <= ?)
        AND (i.kind = 'echo' OR NOT EXISTS (
          SELECT 1 FROM inbox j
          WHERE j.channel_id = i.channel_id AND j.customer_id = i.customer_id AND j.state = 'pending'
            AND (j.platform_ts < i.platform_ts OR (j.platform_ts = i.platform_ts
              AND (j.arrival < i.arrival OR (j.arrival = i.arrival AND j.id < i.id))))))
      ORDER BY i.platform_ts, i.arrival, i.id
      LIMIT ?{skip_locked})
    RETURNING id, channel_id, event_key, kind, customer_id, platform_ts, event, attempts, reply_text,
        reply_parts_sent, media_text"""


class LeaseLost(Exception):
    """This worker's lease on the event expired and another worker took it: stop, change nothing."""


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: str
    owner: str  # the lease holder (this worker) and attempts fence every change: see _FENCE
    channel_id: str
    event_key: str
    kind: str
    customer_id: str | None
    platform_ts: int
    event_json: str
    attempts: int  # including the one now starting
    reply_text: str | None  # generated earlier and stored before sending: never generated twice
    reply_parts_sent: int
    media_text: str | None = None  # a voice note's transcript, stored with its charge: never transcribed twice


_FENCE = " AND lease_owner = ? AND attempts = ?"


def _fence(item: InboxItem) -> tuple[str, int]:
    return (item.owner, item.attempts)


def _item(row: Row, owner: str) -> InboxItem:
    return InboxItem(
        id=row["id"],
        owner=owner,
        channel_id=row["channel_id"],
        event_key=row["event_key"],
        kind=row["kind"],
        customer_id=row["customer_id"],
        platform_ts=int(row["platform_ts"]),
        event_json=row["event"],
        attempts=int(row["attempts"]),
        reply_text=row["reply_text"],
        reply_parts_sent=int(row["reply_parts_sent"]),
        media_text=row["media_text"],
    )


class InboxQueue:
    def __init__(self, db: Database, clock: Clock, *, lease_ms: int) -> None:
        self._db = db
        self._clock = clock
        self._lease_ms = lease_ms

    async def claim(self, owner: str, limit: int) -> list[InboxItem]:
        now, expires = self._clock.now_ms(), self._clock.now_ms() + self._lease_ms

        claim = _CLAIM.replace("{skip_locked}", self._db.dialect.skip_locked)

        rows = await self._db.execute_returning(claim, (owner, expires, now, now, now, limit), small=True)
        return [_item(row, owner) for row in rows]

    async def store_reply(self, tx: Transaction, item: InboxItem, text: str) -> Check:
        """Inside the turn's accounting transaction: the reply is saved with its charge, before any send. The
        statement travels with the transaction's next one; the check it returns, which the caller awaits before
        it commits, raises LeaseLost (rolling back the charge too) if another worker holds the event now."""
        kept = await tx.prefetch(
            "UPDATE inbox SET reply_text = ?, updated_at = ? WHERE id = ?" + _FENCE + " RETURNING id",
            (text, self._clock.now_ms(), item.id, *_fence(item)),
        )

        async def check() -> None:
            if not await kept.rows():
                raise LeaseLost(item.id)

        return check

    async def store_media_text(self, tx: Transaction, item: InboxItem, text: str) -> None:
        """Inside the transcription's accounting transaction: its transcript is saved with its charge.
        Raises LeaseLost (rolling back the charge too) if another worker holds the event now."""
        if not await tx.execute(
            "UPDATE inbox SET media_text = ?, updated_at = ? WHERE id = ?" + _FENCE,
            (text, self._clock.now_ms(), item.id, *_fence(item)),
        ):
            raise LeaseLost(item.id)

    async def extend(self, item: InboxItem) -> bool:
        """Renew the lease of an event still being worked on (a long reply, slow sends)."""
        now = self._clock.now_ms()
        changed = await self._db.execute(
            "UPDATE inbox SET lease_expires_at = ? WHERE id = ? AND state = 'pending'" + _FENCE,
            (now + self._lease_ms, item.id, *_fence(item)),
        )
        return bool(changed)

    async def part_sent(
        self, item: InboxItem, count: int, message_id: str | None, *, finish: tuple[str, str | None] | None = None
    ) -> None:
        """One commit per part sent: our message id (so its echo is known as ours), the count of parts sent (so a
        retry resumes after it) and, after the last part, the event's final state and note."""
        now = self._clock.now_ms()
        params: tuple[int | str | None, ...]
        if finish is None:
            sql, params = "UPDATE inbox SET reply_parts_sent = ?, updated_at = ? WHERE id = ?", (count, now)
        else:
            sql = (
                "UPDATE inbox SET reply_parts_sent = ?, state = ?, last_error = COALESCE(?, last_error),"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = ? WHERE id = ?"
            )
            params = (count, finish[0], finish[1], now)

        async def record(tx: Transaction) -> None:
            if not await tx.execute(sql + _FENCE, (*params, item.id, *_fence(item))):
                raise LeaseLost(item.id)  # nothing recorded; the new holder records its own sends
            if message_id:  # with the commit
                await tx.defer(
                    "INSERT INTO outbound_messages (channel_id, message_id, inbox_id, sent_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (channel_id, message_id) DO NOTHING",
                    (item.channel_id, message_id, item.id, now),
                )

        await self._db.run(record, small=True)

    async def finish(self, item: InboxItem, state: str, note: str | None = None) -> None:
        """done | skipped | dead | undeliverable: the event leaves the queue and releases its conversation."""
        await self._fenced(
            item,
            "UPDATE inbox SET state = ?, last_error = COALESCE(?, last_error), lease_owner = NULL,"
            " lease_expires_at = NULL, updated_at = ? WHERE id = ?",
            (state, note, self._clock.now_ms()),
        )

    async def finish_in(self, tx: Transaction, item: InboxItem, state: str, note: str | None = None) -> None:
        """`finish`, inside the caller's transaction (with what the event left behind: a stored message)."""
        if not await tx.execute(
            "UPDATE inbox SET state = ?, last_error = COALESCE(?, last_error), lease_owner = NULL,"
            " lease_expires_at = NULL, updated_at = ? WHERE id = ?" + _FENCE,
            (state, note, self._clock.now_ms(), item.id, *_fence(item)),
        ):
            raise LeaseLost(item.id)

    async def retry_later(self, item: InboxItem, delay_ms: int, error: str) -> None:
        now = self._clock.now_ms()
        await self._fenced(
            item,
            "UPDATE inbox SET next_attempt_at = ?, last_error = ?, lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = ? WHERE id = ?",
            (now + delay_ms, error, now),
        )

    async def hold(self, item: InboxItem, delay_ms: int, reason: str) -> None:
        """Put the event back untouched for `delay_ms`, without counting this attempt: it waits for something
        outside it (a channel's re-authorisation), it did not fail."""
        now = self._clock.now_ms()
        await self._fenced(
            item,
            "UPDATE inbox SET next_attempt_at = ?, last_error = ?, attempts = attempts - 1, lease_owner = NULL,"
            " lease_expires_at = NULL, updated_at = ? WHERE id = ?",
            (now + delay_ms, reason, now),
        )

    async def give_back(self, item: InboxItem) -> None:
        """Claimed but never started (the process is stopping): back in the queue as it was, due at once, this
        attempt not counted. Raises LeaseLost if the lease is no longer this worker's."""
        await self._fenced(
            item,
            "UPDATE inbox SET attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
            " WHERE id = ?",
            (self._clock.now_ms(),),
        )

    async def wake(self, channel_id: str) -> int:
        """Make a channel's waiting events due now (it was re-authorised); returns how many."""
        now = self._clock.now_ms()
        woken = await self._db.execute(
            "UPDATE inbox SET next_attempt_at = ? WHERE channel_id = ? AND state = 'pending' AND next_attempt_at > ?",
            (now, channel_id, now),
        )
        if woken:
            await self._db.doorbell.ring(INBOX)
        return woken

    async def _fenced(self, item: InboxItem, sql: str, params: tuple[object, ...]) -> None:
        if not await self._db.execute(sql + _FENCE, (*params, item.id, *_fence(item)), small=True):
            raise LeaseLost(item.id)

    async def depth(self) -> int:
        row = await self._db.fetch_one("SELECT COUNT(*) AS n FROM inbox WHERE state = 'pending'")
        return int(row["n"]) if row else 0

    async def purge(self, *, older_than_ms: int) -> int:
        """Drop finished events received before the cutoff; pending ones are never purged.

        The cutoff must stay beyond Meta's retry horizon (7 days for WhatsApp): an event's row is what
        recognises a late retry of it as a duplicate.
        """
        cutoff = self._clock.now_ms() - older_than_ms
        async with self._db.transaction() as tx:
            purged = await tx.execute("DELETE FROM inbox WHERE state <> 'pending' AND received_at < ?", (cutoff,))
            # Our own sent ids only matter while their echoes can still arrive; unrouted deliveries are kept
            # for inspection over the same horizon.
            await tx.execute("DELETE FROM outbound_messages WHERE sent_at < ?", (cutoff,))
            await tx.execute("DELETE FROM webhook_unrouted WHERE received_at < ?", (cutoff,))
            # People's reply keys guard against a client's retry, which comes within minutes, not days.
            await tx.execute("DELETE FROM agent_reply_keys WHERE created_at < ?", (cutoff,))
        return purged
