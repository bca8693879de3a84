"""Per-conversation state of a channel: pauses (a person has the conversation), when the customer last wrote (the
reply window), notices already sent, and the ids of our own messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.clock import Clock
from core.storage.activity import record_takeover
from core.storage.db import Database, Row, Transaction

_ENSURE = """INSERT INTO conversation_state (channel_id, customer_id) VALUES (?, ?)
    ON CONFLICT (channel_id, customer_id) DO NOTHING"""
_INBOUND = """INSERT INTO conversation_state (channel_id, customer_id, last_inbound_at) VALUES (?, ?, ?)
    ON CONFLICT (channel_id, customer_id) DO UPDATE SET last_inbound_at = CASE
      WHEN conversation_state.last_inbound_at IS NULL OR conversation_state.last_inbound_at < excluded.last_inbound_at
      THEN excluded.last_inbound_at ELSE conversation_state.last_inbound_at END
    RETURNING paused_until, paused_reason"""


# A handoff's pause has no end: the conversation waits for a person to resume it. Stored as this end (year
# 146 million), so every "paused while paused_until > now" test holds; the API shows it as no end at all.
INDEFINITE = 2**62
PauseReason = Literal["human_takeover", "handoff", "manual"]


@dataclass(frozen=True, slots=True)
class Pause:
    until_ms: int  # INDEFINITE for a handoff
    reason: str

    @property
    def indefinite(self) -> bool:
        return self.until_ms >= INDEFINITE


class ConversationStateStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def inbound(self, channel_id: str, customer_id: str, at_ms: int) -> Pause | None:
        """The customer wrote at `at_ms` (the platform's time): their reply window runs from the latest such
        moment. The conversation's running pause, if any. One statement: the row is created on first contact.

        Need not be durable (Database.run): a crash that loses it stops the worker before the event it came from
        is finished; the event is then taken up again and writes it again, and the event's own synced commits make
        it durable with themselves. (On SQLite it is then not synced; on PostgreSQL it is.)"""
        rows = await self._db.execute_returning(_INBOUND, (channel_id, customer_id, at_ms), durable=False, small=True)
        return self._running(rows[0] if rows else None)

    async def paused(self, channel_id: str, customer_id: str) -> Pause | None:
        """The conversation's running pause, if any (a read through the primary key: `lookup`)."""
        rows = await self._db.lookup(
            "SELECT paused_until, paused_reason FROM conversation_state WHERE channel_id = ? AND customer_id = ?",
            (channel_id, customer_id),
        )
        return self._running(rows[0] if rows else None)

    async def last_inbound(self, channel_id: str, customer_id: str) -> int | None:
        """When the customer last wrote on this channel (the platform's time), or None if never."""
        row = await self._db.fetch_one(
            "SELECT last_inbound_at FROM conversation_state WHERE channel_id = ? AND customer_id = ?",
            (channel_id, customer_id),
        )
        return None if row is None or row["last_inbound_at"] is None else int(row["last_inbound_at"])

    def _running(self, row: Row | None) -> Pause | None:
        if row is None or row["paused_until"] is None or int(row["paused_until"]) <= self._clock.now_ms():
            return None
        return Pause(int(row["paused_until"]), str(row["paused_reason"] or "human_takeover"))

    async def pause(
        self, channel_id: str, customer_id: str, until_ms: int, *, reason: PauseReason, source: str
    ) -> bool:
        """Pause the bot in this conversation until `until_ms` (INDEFINITE: until resumed); whether it was not
        paused before (a new takeover or handoff, which the activity feed records).

        A person typing ten messages extends one pause, it is not ten takeovers; and a person answering during a
        handoff does not put an end to it: a timed takeover never shortens a pause without end. Whether it is new
        is decided by the row count of a conditional UPDATE, not by a SELECT before it: on a database without
        SQLite's BEGIN IMMEDIATE (PostgreSQL, READ COMMITTED), two concurrent pauses would both read "not paused";
        the second UPDATE waits for the first's row lock, re-checks its condition and changes nothing.
        """
        async with self._db.transaction() as tx:
            return await self.pause_in(tx, channel_id, customer_id, until_ms, reason=reason, source=source)

    async def pause_in(
        self, tx: Transaction, channel_id: str, customer_id: str, until_ms: int, *, reason: PauseReason, source: str
    ) -> bool:
        """`pause`, inside the caller's transaction (a handoff: with the reply that tells the customer)."""
        now = self._clock.now_ms()
        await tx.execute(_ENSURE, (channel_id, customer_id))
        started = await tx.execute(
            "UPDATE conversation_state SET paused_until = ?, paused_reason = ?"
            " WHERE channel_id = ? AND customer_id = ? AND (paused_until IS NULL OR paused_until <= ?)",
            (until_ms, reason, channel_id, customer_id, now),
        )
        if started:
            await record_takeover(tx, channel_id, customer_id, until_ms, reason, source, now)
        elif reason == "human_takeover":  # already paused: a longer end replaces a shorter one
            await tx.execute(
                "UPDATE conversation_state SET paused_until = ? WHERE channel_id = ? AND customer_id = ?"
                " AND paused_until < ?",
                (until_ms, channel_id, customer_id, until_ms),
            )
        else:  # a handoff or an explicit pause says how long: it replaces what ran
            await tx.execute(
                "UPDATE conversation_state SET paused_until = ?, paused_reason = ?"
                " WHERE channel_id = ? AND customer_id = ?",
                (until_ms, reason, channel_id, customer_id),
            )
        return bool(started)

    async def resume(self, channel_id: str, customer_id: str) -> None:
        """The bot answers this conversation again (a pause that already ran out changes nothing)."""
        await self._db.execute(
            "UPDATE conversation_state SET paused_until = NULL, paused_reason = NULL"
            " WHERE channel_id = ? AND customer_id = ?",
            (channel_id, customer_id),
        )

    async def claim_notice(self, channel_id: str, customer_id: str, kind: str, window_ms: int) -> bool:
        """True (and recorded) if no `kind` notice went to this customer within the window: one, not a flood."""
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            await tx.execute(_ENSURE, (channel_id, customer_id))
            claimed = await tx.execute(
                "UPDATE conversation_state SET last_notice = ?, last_notice_at = ?"
                " WHERE channel_id = ? AND customer_id = ?"
                " AND (last_notice IS NULL OR last_notice <> ? OR last_notice_at <= ?)",
                (kind, now, channel_id, customer_id, kind, now - window_ms),
            )
        return bool(claimed)

    async def claim_album(self, channel_id: str, customer_id: str, window_ms: int) -> bool:
        """True (and recorded) for the first photo answered in `window_ms`: an album's other photos get False."""
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            await tx.execute(_ENSURE, (channel_id, customer_id))
            claimed = await tx.execute(
                "UPDATE conversation_state SET album_at = ? WHERE channel_id = ? AND customer_id = ?"
                " AND (album_at IS NULL OR album_at <= ?)",
                (now, channel_id, customer_id, now - window_ms),
            )
        return bool(claimed)

    async def record_sent(self, tx: Transaction, channel_id: str, message_ids: list[str], now_ms: int) -> None:
        """Messages we sent outside a turn (a person's reply through the API): their echoes are ours."""
        for message_id in message_ids:
            await tx.execute(
                "INSERT INTO outbound_messages (channel_id, message_id, inbox_id, sent_at) VALUES (?, ?, NULL, ?)"
                " ON CONFLICT (channel_id, message_id) DO NOTHING",
                (channel_id, message_id, now_ms),
            )

    async def is_ours(self, channel_id: str, message_id: str) -> bool:
        row = await self._db.fetch_one(
            "SELECT 1 FROM outbound_messages WHERE channel_id = ? AND message_id = ?", (channel_id, message_id)
        )
        return row is not None
