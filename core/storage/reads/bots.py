"""The bots page of the dashboard: each live bot with its channels' health, last activity and totals.

Lifetime message counts come from the contacts (each keeps its message count, and erasing a customer removes
the contact with its messages, so the two agree); a time range counts the messages themselves. Either way
`contacts` means contacts with messages (turns the model answered): a contact is also created for a turn that
failed or was refused for quota, and those are not counted. Call and cost totals are one walk of usage_bot_time
per bot: an index range in (bot, time) order that needs no sort; quota refusals (attempts = 0) are not calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.storage.db import Database, Params
from core.storage.reads.totals import ReportScope

_BOTS = "SELECT id, account_id, name, model, created_at FROM bots WHERE deleted_at IS NULL{account} ORDER BY {order}"
_CHANNELS = """SELECT id, bot_id, platform, external_id, status, status_reason, last_delivery_at, last_error,
    last_error_at FROM channels WHERE disconnected_at IS NULL{account} ORDER BY created_at, id"""
_LIFETIME = """SELECT bot_id, COALESCE(SUM(CASE WHEN message_count > 0 THEN 1 ELSE 0 END), 0) AS contacts,
    COALESCE(SUM(message_count), 0) AS messages,
    MAX(last_message_at) AS last_at FROM contacts{account} GROUP BY bot_id"""
_IN_RANGE = """SELECT bot_id, COUNT(DISTINCT contact_id) AS contacts, COUNT(*) AS messages FROM messages
    WHERE {where} GROUP BY bot_id"""
_USAGE = """SELECT COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) AS requests,
    COALESCE(SUM(CASE WHEN attempts = 0 AND outcome = 'quota_exceeded' THEN 1 ELSE 0 END), 0) AS refusals,
    COALESCE(SUM(cost_nanousd), 0) AS cost,
    COALESCE(SUM(CASE WHEN attempts > 0 AND cost_nanousd IS NULL THEN 1 ELSE 0 END), 0) AS unpriced
    FROM usage_records WHERE bot_id = ?{range}"""


@dataclass(frozen=True, slots=True)
class BotChannel:
    id: str
    platform: str
    external_id: str
    status: str
    status_reason: str | None
    last_delivery_at: int | None
    last_error: str | None
    last_error_at: int | None


@dataclass(frozen=True, slots=True)
class BotReport:
    id: str
    account_id: str
    name: str
    model: str | None
    created_at: int
    channels: tuple[BotChannel, ...]
    last_activity_at: int | None  # the newest message with any of its contacts, whatever the range
    contacts: int  # contacts with messages (in the range, when one is given; over the bot's life otherwise)
    messages: int
    requests: int  # model calls attempted
    quota_refusals: int  # turns refused for quota before any call
    cost_nanousd: int
    unpriced_requests: int


class BotReportReader:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def bots(self, account_id: str | None, span: ReportScope | None) -> list[BotReport]:
        """Live bots of the account (of every account when None); totals within `span` or over their life."""
        account, params = ("", ()) if account_id is None else (" AND account_id = ?", (account_id,))
        order = "seq" if account_id is not None else "created_at, id"
        bots = await self._db.fetch_all(_BOTS.format(account=account, order=order), params)
        channels = await self._channels(account, params)
        contact_filter = "" if account_id is None else " WHERE account_id = ?"
        lifetime = {r["bot_id"]: r for r in await self._db.fetch_all(_LIFETIME.format(account=contact_filter), params)}
        if span is None:
            in_range = lifetime
        else:
            where, range_params = span.where()
            in_range = {r["bot_id"]: r for r in await self._db.fetch_all(_IN_RANGE.format(where=where), range_params)}
        reports = []
        for bot in bots:
            usage = await self._usage(bot["id"], span)
            counted = in_range.get(bot["id"])
            last = lifetime.get(bot["id"])
            reports.append(
                BotReport(
                    id=bot["id"],
                    account_id=bot["account_id"],
                    name=bot["name"],
                    model=bot["model"],
                    created_at=int(bot["created_at"]),
                    channels=tuple(channels.get(bot["id"], ())),
                    last_activity_at=None if last is None or last["last_at"] is None else int(last["last_at"]),
                    contacts=0 if counted is None else int(counted["contacts"]),
                    messages=0 if counted is None else int(counted["messages"]),
                    requests=int(usage["requests"]),
                    quota_refusals=int(usage["refusals"]),
                    cost_nanousd=int(usage["cost"]),
                    unpriced_requests=int(usage["unpriced"]),
                )
            )
        return reports

    async def _channels(self, account: str, params: Params) -> dict[str, list[BotChannel]]:
        by_bot: dict[str, list[BotChannel]] = {}
        for r in await self._db.fetch_all(_CHANNELS.format(account=account), params):
            by_bot.setdefault(r["bot_id"], []).append(
                BotChannel(
                    id=r["id"],
                    platform=r["platform"],
                    external_id=r["external_id"],
                    status=r["status"],
                    status_reason=r["status_reason"],
                    last_delivery_at=r["last_delivery_at"],
                    last_error=r["last_error"],
                    last_error_at=r["last_error_at"],
                )
            )
        return by_bot

    async def _usage(self, bot_id: str, span: ReportScope | None) -> dict[str, int]:
        if span is None:
            row = await self._db.fetch_one(_USAGE.format(range=""), (bot_id,))
        else:
            sql = _USAGE.format(range=" AND created_at >= ? AND created_at < ?")
            row = await self._db.fetch_one(sql, (bot_id, span.start, span.end))
        assert row is not None
        return {key: int(row[key]) for key in ("requests", "refusals", "cost", "unpriced")}
