"""Per-conversation state of a channel: human takeover, notices already sent, and the ids of our own messages."""

from __future__ import annotations

from core.clock import Clock
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

    async def pause(self, channel_id: str, customer_id: str, until_ms: int) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(_ENSURE, (channel_id, customer_id))
            await tx.execute(
                "UPDATE conversation_state SET paused_until = ? WHERE channel_id = ? AND customer_id = ?",
                (until_ms, channel_id, customer_id),
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

    async def record_outbound(self, channel_id: str, message_id: str, inbox_id: str | None) -> None:
        await self._db.execute(
            "INSERT INTO outbound_messages (channel_id, message_id, inbox_id, sent_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (channel_id, message_id) DO NOTHING",
            (channel_id, message_id, inbox_id, self._clock.now_ms()),
        )

    async def is_ours(self, channel_id: str, message_id: str) -> bool:
        row = await self._db.fetch_one(
            "SELECT 1 FROM outbound_messages WHERE channel_id = ? AND message_id = ?", (channel_id, message_id)
        )
        return row is not None
