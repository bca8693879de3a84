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
from core.models import Bot, BotSettings
from core.storage.activity import record_dead_letter
from core.storage.db import Database
from core.storage.doorbell import CHANNELS, SETTINGS
from core.storage.recent import Recent
from core.storage.records import columns, from_row, stored
from core.storage.updates import set_clause

# Every column the store reads is a field of Bot; the ones an owner sets are the fields of BotSettings.
_FIELDS = columns(Bot)
_SETTINGS = columns(BotSettings)
_COLUMNS = ", ".join(_FIELDS)


class BotStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._recent: Recent[str, Bot] = Recent(db.doorbell, SETTINGS)
        self._firsts: Recent[str, Bot] = Recent(db.doorbell, SETTINGS)  # by account: its default bot

    async def create(self, account_id: str, settings: BotSettings) -> Bot:
        now = self._clock.now_ms()
        values = {**settings.model_dump(), "id": new_id("bot"), "account_id": account_id}
        values |= {"created_at": now, "updated_at": now}
        names = [name for name in _FIELDS if name in values]
        async with self._db.transaction() as tx:
            # Locked: two bots created at once for one account (two processes) must not both take the same seq.
            if not await tx.fetch_one("SELECT 1 FROM accounts WHERE id = ?" + tx.dialect.locked(), (account_id,)):
                raise NotFound("account")
            # `seq` orders an account's bots by creation even within one millisecond: the first is the default.
            row = await tx.fetch_one(
                f"INSERT INTO bots ({', '.join(names)}, seq) SELECT {', '.join('?' * len(names))},"
                f" COALESCE(MAX(seq), 0) + 1 FROM bots WHERE account_id = ? RETURNING {_COLUMNS}",
                (*(stored(values[name]) for name in names), account_id),
            )
        assert row is not None
        return from_row(Bot, row)

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
        return from_row(Bot, row)

    async def current(self, bot_id: str, *, account_id: str | None = None) -> Bot:
        """`get` for a turn: kept for a few seconds, read again after any change (core/storage/recent.py)."""
        bot = await self._recent.get(bot_id, self.get)
        if account_id is not None and bot.account_id != account_id:
            raise NotFound("bot")  # another account's bot: as if it did not exist
        return bot

    async def current_first(self, account_id: str) -> Bot:
        """`first` for a turn (the account's default bot), kept as `current` keeps a bot. A new bot never
        changes it (it comes after); a deleted one rings."""
        return await self._firsts.get(account_id, self.first)

    async def list(self, account_id: str) -> list[Bot]:
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM bots WHERE account_id = ? AND deleted_at IS NULL ORDER BY seq",
            (account_id,),
        )
        return [from_row(Bot, r) for r in rows]

    async def first(self, account_id: str) -> Bot:
        bots = await self.list(account_id)
        if not bots:
            raise NotFound("bot")
        return bots[0]

    async def update(self, bot_id: str, fields: Mapping[str, Any]) -> Bot:
        clause, params = set_clause(fields, _SETTINGS, updated_at=self._clock.now_ms())
        async with self._db.transaction() as tx:
            row = await tx.fetch_one(
                f"UPDATE bots SET {clause} WHERE id = ? AND deleted_at IS NULL RETURNING {_COLUMNS}",
                (*params, bot_id),
            )
            if row is not None and fields.get("keep_images") is False:
                # The owner no longer wants customers' photos kept: the ones kept go now, not with each conversation.
                await tx.execute(
                    "DELETE FROM message_images WHERE contact_id IN (SELECT id FROM contacts WHERE bot_id = ?)",
                    (bot_id,),
                )
        if row is None:
            raise NotFound("bot")
        await self._db.doorbell.ring(SETTINGS)  # every process's next turn of this bot uses the new settings
        return from_row(Bot, row)

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
        await self._db.doorbell.ring(CHANNELS)  # its channels went with it, in every process
        await self._db.doorbell.ring(SETTINGS)

    async def fallback_sent(self, channel_id: str, customer_id: str, inbox_id: str, attempts: int) -> None:
        """A bot answers a customer with its fallback message after an event was given up on: recorded in the
        account's activity feed (a `dead_letter` row, once per event), which the dashboards count as a fallback."""
        async with self._db.transaction() as tx:
            await record_dead_letter(tx, channel_id, customer_id, inbox_id, attempts, self._clock.now_ms())
