"""The activity feed of an account: conversations started, quota warnings, channel errors, human takeovers,
admin actions and dead letters (a customer sent the bot's fallback message), newest first.

Rows are written where the event happens, inside that event's own transaction when it has one (a new contact,
a quota settlement, a pause), so the feed never shows something that was rolled back. Summaries carry no
personal data (no customer ids, no message text): the feed links to the contact by its opaque id instead, and
an erasure unlinks it (core/storage/erasure.py). `dedupe_key` makes "once per account, period and threshold"
warnings idempotent under concurrent settlements.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import Field

from core.clock import Clock
from core.fields import EpochMs
from core.ids import new_id
from core.models import Contact, Record
from core.storage.db import Database, Row, Transaction
from core.storage.keyset import newest_first
from core.storage.records import from_row

ActivityKind = Literal[
    "conversation_started",
    "quota_warning",
    "channel_error",
    "human_takeover",
    "handoff",
    "admin_action",
    "dead_letter",
    "message_undeliverable",
]
KINDS: tuple[str, ...] = get_args(ActivityKind)
# Shares of the period's allowance that raise a warning, in percent.
QUOTA_THRESHOLDS = (80, 100)
_ERROR_STATUSES = {"needs_reauth": "needs re-authorisation", "disabled": "was disabled"}
_PLATFORM_NAMES = {"messenger": "Messenger", "instagram": "Instagram", "whatsapp": "WhatsApp", "relay": "relay API"}
_COLUMNS = "id, account_id, kind, bot_id, channel_id, contact_id, summary, detail, created_at"


@dataclass(frozen=True, slots=True)
class NewActivity:
    account_id: str
    kind: str
    summary: str
    bot_id: str | None = None
    channel_id: str | None = None
    contact_id: str | None = None
    detail: Mapping[str, Any] | None = None
    dedupe_key: str | None = None  # a second row with the same key is silently not written


class ActivityEntry(Record):
    id: str
    account_id: str
    kind: ActivityKind
    summary: str = Field(description="one sentence; never a customer's id or words")
    bot_id: str | None
    channel_id: str | None
    contact_id: str | None
    detail: dict[str, Any] | None = Field(description="kind-specific figures (threshold, status, ...)")
    created_at: EpochMs


def _entry(row: Row) -> ActivityEntry:
    return from_row(ActivityEntry, row, detail=None if row["detail"] is None else json.loads(row["detail"]))


async def add_activity(tx: Transaction, entry: NewActivity, now_ms: int) -> bool:
    """Write one feed row inside the caller's transaction; False when its dedupe key was already used."""
    return bool(await tx.execute(*_activity_insert(entry, now_ms)))


def _activity_insert(entry: NewActivity, now_ms: int) -> tuple[str, tuple[object, ...]]:
    return (
        "INSERT INTO activity (id, account_id, kind, bot_id, channel_id, contact_id, summary, detail, dedupe_key,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
        (
            new_id("act"),
            entry.account_id,
            entry.kind,
            entry.bot_id,
            entry.channel_id,
            entry.contact_id,
            entry.summary,
            None if entry.detail is None else json.dumps(dict(entry.detail), separators=(",", ":")),
            entry.dedupe_key,
            now_ms,
        ),
    )


async def record_conversation_started(tx: Transaction, contact: Contact) -> None:
    """With the caller's commit (no dedupe key: nothing to wait for)."""
    platform = _PLATFORM_NAMES.get(contact.platform, contact.platform)
    entry = NewActivity(
        contact.account_id,
        "conversation_started",
        f"New conversation on {platform}",
        bot_id=contact.bot_id,
        contact_id=contact.id,
        detail={"platform": contact.platform},
    )
    await tx.defer(*_activity_insert(entry, contact.created_at))


async def record_quota_crossings(
    tx: Transaction, account_id: str, period_start: int, before: int, after: int, limit: int, now_ms: int
) -> None:
    """A warning for each threshold that usage crossed going from `before` to `after` tokens of `limit`."""
    if limit <= 0:
        return
    for threshold in QUOTA_THRESHOLDS:
        if before * 100 < threshold * limit <= after * 100:
            await record_quota_warning(tx, account_id, period_start, threshold, after, limit, now_ms)


async def record_quota_warning(
    tx: Transaction, account_id: str, period_start: int, threshold: int, used: int, limit: int, now_ms: int
) -> None:
    summary = (
        "The token allowance of this month is used up; customers are not being answered"
        if threshold >= 100
        else f"{threshold}% of this month's token allowance is used"
    )
    await add_activity(
        tx,
        NewActivity(
            account_id,
            "quota_warning",
            summary,
            detail={"threshold_percent": threshold, "used_tokens": used, "limit_tokens": limit},
            dedupe_key=f"quota:{account_id}:{period_start}:{threshold}",
        ),
        now_ms,
    )


async def record_channel_error(tx: Transaction, channel: Row, status: str, reason: str, now_ms: int) -> None:
    """Inside ChannelStore.set_status's transaction, once its conditional UPDATE did change the status (so a
    second failing send is not news): one row when the channel turns `needs_reauth` or `disabled`."""
    if status not in _ERROR_STATUSES:
        return
    platform = _PLATFORM_NAMES.get(channel["platform"], channel["platform"])
    await add_activity(
        tx,
        NewActivity(
            channel["account_id"],
            "channel_error",
            f"{platform} channel {channel['external_id']} {_ERROR_STATUSES[status]}",
            bot_id=channel["bot_id"],
            channel_id=channel["id"],
            detail={"status": status, "previous_status": channel["status"], "reason": reason[:500]},
        ),
        now_ms,
    )


async def record_takeover(
    tx: Transaction, channel_id: str, customer_id: str, until_ms: int, reason: str, source: str, now_ms: int
) -> None:
    """A person took over a conversation of `channel_id` (detected from an echo, an agent reply, asked for through
    the API), or the bot handed it to a person (`reason` handoff: until someone resumes it)."""
    where = await _conversation(tx, channel_id, customer_id)
    if where is None:
        return
    if reason == "handoff":
        entry = NewActivity(
            where.account_id,
            "handoff",
            f"The bot handed a {where.platform_name} conversation to a person ({source}); it stays paused until"
            " someone resumes it",
            bot_id=where.bot_id,
            channel_id=channel_id,
            contact_id=where.contact_id,
            detail={"platform": where.platform, "source": source},
        )
        await add_activity(tx, entry, now_ms)
        return
    minutes = max(0, (until_ms - now_ms + 30_000) // 60_000)  # rounded: the caller read the clock a moment ago
    who = {"echo": "A person answered from the inbox", "agent": "A person answered through the gateway"}.get(
        source, "A person took over"
    )
    await add_activity(
        tx,
        NewActivity(
            where.account_id,
            "human_takeover",
            f"{who}; the bot is paused in this conversation for {minutes} min",
            bot_id=where.bot_id,
            channel_id=channel_id,
            contact_id=where.contact_id,
            detail={"source": source, "paused_minutes": minutes},
        ),
        now_ms,
    )


async def record_undeliverable(
    tx: Transaction, channel_id: str, contact_id: str | None, reason: str, now_ms: int
) -> None:
    """A customer's message of `channel_id` could not be answered: the platform's reply window had closed."""
    where = await _conversation(tx, channel_id, None)
    if where is None:
        return
    await add_activity(
        tx,
        NewActivity(
            where.account_id,
            "message_undeliverable",
            f"A {where.platform_name} customer's message could not be answered: {reason}",
            bot_id=where.bot_id,
            channel_id=channel_id,
            contact_id=contact_id,
            detail={"platform": where.platform, "reason": reason},
        ),
        now_ms,
    )


async def record_dead_letter(
    tx: Transaction, channel_id: str, customer_id: str, inbox_id: str, attempts: int, now_ms: int
) -> None:
    """An event of `channel_id` was given up on after `attempts` tries and its customer is being sent the bot's
    fallback message. Durable, unlike the inbox row (purged after days): the dashboards count fallbacks from
    these rows. Keyed by the event, so a fallback send that is retried or resumed still makes one row."""
    where = await _conversation(tx, channel_id, customer_id)
    if where is None:
        return
    await add_activity(
        tx,
        NewActivity(
            where.account_id,
            "dead_letter",
            f"A {where.platform_name} customer got the fallback message after {attempts} failed attempts",
            bot_id=where.bot_id,
            channel_id=channel_id,
            contact_id=where.contact_id,
            detail={"platform": where.platform, "attempts": attempts},
            dedupe_key=f"dead_letter:{inbox_id}",
        ),
        now_ms,
    )


@dataclass(frozen=True, slots=True)
class _Conversation:
    """Where a channel event belongs: the channel's account, bot and platform, and the customer's contact."""

    account_id: str
    bot_id: str
    platform: str
    contact_id: str | None

    @property
    def platform_name(self) -> str:
        return _PLATFORM_NAMES.get(self.platform, self.platform)


async def _conversation(tx: Transaction, channel_id: str, customer_id: str | None) -> _Conversation | None:
    """None when the channel is gone; the contact only when `customer_id` is given and it exists."""
    channel = await tx.fetch_one("SELECT account_id, bot_id, platform FROM channels WHERE id = ?", (channel_id,))
    if channel is None:
        return None
    contact = None
    if customer_id is not None:
        contact = await tx.fetch_one(
            "SELECT id FROM contacts WHERE bot_id = ? AND platform = ? AND external_id = ?",
            (channel["bot_id"], channel["platform"], customer_id),
        )
    return _Conversation(
        str(channel["account_id"]),
        str(channel["bot_id"]),
        str(channel["platform"]),
        None if contact is None else str(contact["id"]),
    )


class ActivityStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add(self, entry: NewActivity) -> bool:
        async with self._db.transaction() as tx:
            return await add_activity(tx, entry, self._clock.now_ms())

    async def page(
        self, account_id: str | None, *, kind: str | None, after: tuple[int, str] | None, limit: int
    ) -> list[ActivityEntry]:
        """Up to `limit` entries, newest first, older than the `(created_at, id)` key `after`."""
        equal = {"account_id": account_id, "kind": kind}
        rows = await newest_first(self._db, "activity", _COLUMNS, equal, after=after, limit=limit)
        return [_entry(r) for r in rows]
