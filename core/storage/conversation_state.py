"""Per-conversation state of a channel: human takeover, notices already sent, and the ids of our own messages."""

from __future__ import annotations

from core.clock import Clock
from core.storage.activity import record_takeover
from core.storage.db import Database

_ENSURE = """INSERT INTO conversation_state (channel_id, customer_id) VALUES (?, ?)
    ON CONFLICT (channel_id, customer_id) DO NOTHING"""


class ConversationStateStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def paused_until(self, channel_id: str, customer_id: str) -> int | None:
        row = await self._db.fetch_one(
            "SELECT paused_until FROM conversation_state WHERE channel_id = ? AND customer_id = ?",
            (channel_id, customer_id),
        )
        return None if row is None or row["paused_until"] is None else int(row["paused_until"])

    async def pause(self, channel_id: str, customer_id: str, until_ms: int, *, source: str = "echo") -> None:
        """Pause the bot in this conversation until `until_ms`: a human answers (an echo, or through the API).

        The activity feed gets a human takeover only when the conversation was not already paused: a person
        typing ten messages extends one pause, it is not ten takeovers. Whether it is a new takeover is decided by
        the row count of a conditional UPDATE, not by a SELECT before it: on a database without SQLite's
        BEGIN IMMEDIATE (PostgreSQL, READ COMMITTED), two concurrent pauses would both read "not paused"; the
        second UPDATE waits for the first's row lock, re-checks its condition and changes nothing.
        """
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            await tx.execute(_ENSURE, (channel_id, customer_id))
            started = await tx.execute(
                "UPDATE conversation_state SET paused_until = ? WHERE channel_id = ? AND customer_id = ?"
                " AND (paused_until IS NULL OR paused_until <= ?)",
                (until_ms, channel_id, customer_id, now),
            )
            if started:
                await record_takeover(tx, channel_id, customer_id, until_ms, source, now)
            else:  # already paused: the new end replaces the old one
                await tx.execute(
                    "UPDATE conversation_state SET paused_until = ? WHERE channel_id = ? AND customer_id = ?",
                    (until_ms, channel_id, customer_id),
                )

    async def resume(self, channel_id: str, customer_id: str) -> None:
        """The bot answers this conversation again (a pause that already ran out changes nothing)."""
        await self._db.execute(
            "UPDATE conversation_state SET paused_until = NULL WHERE channel_id = ? AND customer_id = ?",
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

    async def is_ours(self, channel_id: str, message_id: str) -> bool:
        row = await self._db.fetch_one(
            "SELECT 1 FROM outbound_messages WHERE channel_id = ? AND message_id = ?", (channel_id, message_id)
        )
        return row is not None
