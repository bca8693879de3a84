"""Read side of the status API and the metrics scrape: channel health, inbox depth, the last model call.

Every count here is served by an index: pending events by the partial `inbox_pending_conversation` index, dead
letters by the partial `inbox_dead` index (dead events are rare, so both stay small however long the history),
the last model call by `usage_time` / `usage_account_time`. A dashboard polling these costs next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.storage.db import Database

DAY_MS = 24 * 3600 * 1000

_CHANNELS = """SELECT c.id, c.account_id, c.bot_id, c.platform, c.external_id, c.status, c.status_reason,
    c.last_delivery_at, c.last_error, c.last_error_at,
    (SELECT COUNT(*) FROM inbox i WHERE i.channel_id = c.id AND i.state = 'pending') AS pending,
    (SELECT COUNT(*) FROM inbox i WHERE i.channel_id = c.id AND i.state = 'dead') AS dead,
    (SELECT COUNT(*) FROM inbox i WHERE i.channel_id = c.id AND i.state = 'dead' AND i.updated_at >= ?) AS dead_recent
    FROM channels c WHERE c.disconnected_at IS NULL"""


@dataclass(frozen=True, slots=True)
class ChannelHealth:
    id: str
    account_id: str
    bot_id: str
    platform: str
    external_id: str
    status: str  # active | needs_reauth | disabled
    status_reason: str | None
    last_delivery_at: int | None
    last_error: str | None
    last_error_at: int | None
    pending: int  # inbox events waiting to be answered
    dead: int  # dead letters still kept (the inbox keeps finished events 10 days)
    dead_last_24h: int


@dataclass(frozen=True, slots=True)
class LastCall:
    """The newest usage record: what the engine last saw from the model provider."""

    outcome: str
    error_code: str | None
    model: str
    created_at: int


class StatusReader:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def channels(self, account_id: str | None, now_ms: int) -> list[ChannelHealth]:
        sql = _CHANNELS
        params: list[int | str] = [now_ms - DAY_MS]
        if account_id is not None:
            sql += " AND c.account_id = ?"
            params.append(account_id)
        rows = await self._db.fetch_all(sql + " ORDER BY c.created_at, c.id", params)
        return [
            ChannelHealth(
                id=r["id"],
                account_id=r["account_id"],
                bot_id=r["bot_id"],
                platform=r["platform"],
                external_id=r["external_id"],
                status=r["status"],
                status_reason=r["status_reason"],
                last_delivery_at=r["last_delivery_at"],
                last_error=r["last_error"],
                last_error_at=r["last_error_at"],
                pending=int(r["pending"]),
                dead=int(r["dead"]),
                dead_last_24h=int(r["dead_recent"]),
            )
            for r in rows
        ]

    async def inbox_depth(self) -> dict[str, int]:
        """Pending, dead and undeliverable inbox events over all channels (index counts, not a GROUP BY over the
        table); dead and undeliverable ones over the inbox's retention."""
        row = await self._db.fetch_one(
            "SELECT (SELECT COUNT(*) FROM inbox WHERE state = 'pending') AS pending,"
            " (SELECT COUNT(*) FROM inbox WHERE state = 'dead') AS dead,"
            " (SELECT COUNT(*) FROM inbox WHERE state = 'undeliverable') AS undeliverable"
        )
        assert row is not None
        return {state: int(row[state]) for state in ("pending", "dead", "undeliverable")}

    async def last_call(self, account_id: str | None) -> LastCall | None:
        # attempts > 0: a turn refused for quota never reached the model and says nothing about it.
        sql = "SELECT outcome, error_code, model, created_at FROM usage_records WHERE attempts > 0"
        params: list[object] = []
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        row = await self._db.fetch_one(sql + " ORDER BY created_at DESC LIMIT 1", params)
        if row is None:
            return None
        return LastCall(row["outcome"], row["error_code"], row["model"], int(row["created_at"]))
