"""Bots: persona, model, sampling and memory settings. Deleting one hides it but keeps its usage history.

A bot's fallback message going to a customer is recorded here too (in the activity feed): the channel worker
holds this store, and the dashboards count fallbacks from those rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.clock import Clock
from core.errors import NotFound
from core.ids import new_id
from core.models import Bot
from core.storage.activity import record_dead_letter
from core.storage.db import Database, Row
from core.storage.updates import set_clause

_COLUMNS = (
    "id, account_id, name, persona, model, temperature, max_reply_tokens, memory_tokens, "
    "fallback_message, created_at, updated_at, media_reply, handover_pause_minutes"
)
UPDATABLE = (
    "name",
    "persona",
    "model",
    "temperature",
    "max_reply_tokens",
    "memory_tokens",
    "fallback_message",
    "media_reply",
    "handover_pause_minutes",
)


def _bot(row: Row) -> Bot:
    return Bot(
        id=row["id"],
        account_id=row["account_id"],
        name=row["name"],
        persona=row["persona"],
        model=row["model"],
        temperature=row["temperature"],
        max_reply_tokens=int(row["max_reply_tokens"]),
        memory_tokens=int(row["memory_tokens"]),
        fallback_message=row["fallback_message"],
        created_at=int(row["created_at"]),
        updated_at=int(row["updated_at"]),
        media_reply=row["media_reply"],
        handover_pause_minutes=int(row["handover_pause_minutes"]),
    )


class BotStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, account_id: str, fields: Mapping[str, Any]) -> Bot:
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            if not await tx.fetch_one("SELECT 1 FROM accounts WHERE id = ?", (account_id,)):
                raise NotFound("account")
            # `seq` orders an account's bots by creation even within one millisecond: the first is the default.
            row = await tx.fetch_one(
                f"INSERT INTO bots ({_COLUMNS}, seq) SELECT {', '.join('?' * 13)}, COALESCE(MAX(seq), 0) + 1"
                f" FROM bots WHERE account_id = ? RETURNING {_COLUMNS}",
                (
                    new_id("bot"),
                    account_id,
                    fields["name"],
                    fields["persona"],
                    fields.get("model"),
                    fields.get("temperature"),
                    fields["max_reply_tokens"],
                    fields["memory_tokens"],
                    fields["fallback_message"],
                    now,
                    now,
                    fields.get("media_reply"),
                    fields.get("handover_pause_minutes", 30),
                    account_id,
                ),
            )
        assert row is not None
        return _bot(row)

    async def get(self, bot_id: str, *, account_id: str | None = None) -> Bot:
        """A live bot; with `account_id`, only if it belongs to that account (else NotFound, like a bad id)."""
        sql = f"SELECT {_COLUMNS} FROM bots WHERE id = ? AND deleted_at IS NULL"
        params: tuple[str, ...] = (bot_id,)
        if account_id is not None:
            sql += " AND account_id = ?"
            params += (account_id,)
        row = await self._db.fetch_one(sql, params)
        if row is None:
            raise NotFound("bot")
        return _bot(row)

    async def list(self, account_id: str) -> list[Bot]:
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM bots WHERE account_id = ? AND deleted_at IS NULL ORDER BY seq",
            (account_id,),
        )
        return [_bot(r) for r in rows]

    async def first(self, account_id: str) -> Bot:
        bots = await self.list(account_id)
        if not bots:
            raise NotFound("bot")
        return bots[0]

    async def update(self, bot_id: str, fields: Mapping[str, Any]) -> Bot:
        clause, params = set_clause(fields, UPDATABLE, updated_at=self._clock.now_ms())
        async with self._db.transaction() as tx:
            row = await tx.fetch_one(
                f"UPDATE bots SET {clause} WHERE id = ? AND deleted_at IS NULL RETURNING {_COLUMNS}",
                (*params, bot_id),
            )
        if row is None:
            raise NotFound("bot")
        return _bot(row)

    async def delete(self, bot_id: str) -> None:
        """Hide the bot and disconnect its channels in one commit: no webhook may reach a deleted bot."""
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            if not await tx.execute(
                "UPDATE bots SET deleted_at = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL", (now, now, bot_id)
            ):
                raise NotFound("bot")
            await tx.execute(
                "UPDATE channels SET disconnected_at = ?, updated_at = ? WHERE bot_id = ? AND disconnected_at IS NULL",
                (now, now, bot_id),
            )

    async def fallback_sent(self, channel_id: str, customer_id: str, inbox_id: str, attempts: int) -> None:
        """A bot answers a customer with its fallback message after an event was given up on: recorded in the
        account's activity feed (a `dead_letter` row, once per event), which the dashboards count as a fallback."""
        async with self._db.transaction() as tx:
            await record_dead_letter(tx, channel_id, customer_id, inbox_id, attempts, self._clock.now_ms())
