"""Read models of the conversations API: contacts as conversations (last message, pause state) and their messages.

The last message is found without a sort: a contact's messages are numbered 1..message_count (seq), so the
newest is the one whose seq equals the count. The pause state lives per channel (conversation_state), so a
contact's pause is the latest one over the live channels of its bot on its platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import Field

from core.errors import NotFound
from core.fields import EpochMs
from core.models import Record
from core.storage.db import Database, Row
from core.storage.records import from_row

PREVIEW_CHARS = 140
ConversationPlatform = Literal["messenger", "instagram", "whatsapp", "relay"]
PLATFORMS: tuple[str, ...] = get_args(ConversationPlatform)

_PAUSES = """FROM conversation_state s JOIN channels ch ON ch.id = s.channel_id
    WHERE s.customer_id = c.external_id AND ch.bot_id = c.bot_id AND ch.platform = c.platform
    AND ch.disconnected_at IS NULL"""
_PAUSED_UNTIL = f"(SELECT MAX(s.paused_until) {_PAUSES})"
_PAUSED_REASON = (
    f"(SELECT s.paused_reason {_PAUSES} AND s.paused_until IS NOT NULL ORDER BY s.paused_until DESC LIMIT 1)"
)

_SUMMARY = f"""SELECT c.id, c.account_id, c.bot_id, b.name AS bot_name, c.platform, c.external_id, c.message_count,
    c.created_at, c.last_message_at, m.role AS last_role, SUBSTR(m.content, 1, {PREVIEW_CHARS + 1}) AS last_preview,
    {_PAUSED_UNTIL} AS paused_until, {_PAUSED_REASON} AS paused_reason
    FROM contacts c JOIN bots b ON b.id = c.bot_id
    LEFT JOIN messages m ON m.contact_id = c.id AND m.seq = c.message_count"""


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    id: str
    account_id: str
    bot_id: str
    bot_name: str
    platform: str
    external_id: str
    message_count: int
    created_at: int
    last_message_at: int | None
    last_role: str | None
    last_preview: str | None  # at most PREVIEW_CHARS characters, with an ellipsis when cut
    paused_until: int | None  # the latest pause over the contact's channels, expired or not
    paused_reason: str | None  # that pause's reason


@dataclass(frozen=True, slots=True)
class ConversationFilter:
    account_id: str | None  # None: every account (the operator)
    q: str | None = None  # a substring of the external id or of any message, case-insensitive
    platform: str | None = None
    bot_id: str | None = None


class MessageView(Record):
    id: str
    seq: int = Field(ge=1)
    role: Literal["user", "assistant", "agent"] = Field(
        description="user: the customer; assistant: the bot; agent: a person answering through the gateway"
    )
    content: str
    tokens: int = Field(ge=0)
    created_at: EpochMs
    rating: Literal["up", "down"] | None = Field(description="feedback on a reply")
    author: str | None = Field(description="agent messages: who sent it (the sub of their token)")
    note: Literal["paused", "undeliverable", "transcript", "image"] | None = Field(
        description="paused: the customer wrote while a person had the conversation (the bot did not answer); "
        "undeliverable: it arrived after the platform's reply window had closed, so nobody could answer it; "
        "transcript: the customer sent a voice note, and this is what it said; image: the customer sent a photo "
        "(its caption here; the photo itself is shown to the model for that turn only, never kept)"
    )


def _summary(row: Row) -> ConversationSummary:
    preview = row["last_preview"]
    if preview is not None and len(preview) > PREVIEW_CHARS:
        preview = preview[: PREVIEW_CHARS - 1] + "…"
    return ConversationSummary(
        id=row["id"],
        account_id=row["account_id"],
        bot_id=row["bot_id"],
        bot_name=row["bot_name"],
        platform=row["platform"],
        external_id=row["external_id"],
        message_count=int(row["message_count"]),
        created_at=int(row["created_at"]),
        last_message_at=None if row["last_message_at"] is None else int(row["last_message_at"]),
        last_role=row["last_role"],
        last_preview=preview,
        paused_until=None if row["paused_until"] is None else int(row["paused_until"]),
        paused_reason=row["paused_reason"],
    )


def _like_pattern(text: str) -> str:
    """`%text%` for `casefold(x) LIKE casefold(?) ESCAPE '!'`, matched literally; the query folds both sides with
    the same SQL function (core/storage/db.py), so non-ASCII letters match whatever their case."""
    escaped = text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


class ConversationReader:
    def __init__(self, db: Database, listing_db: Database) -> None:
        self._db = db
        # Listing and search may scan every message of an account (a `q` that matches nothing): they run on the
        # reports connection, so the relay's and the webhooks' reads on `db` never queue behind one.
        self._listing_db = listing_db

    async def page(
        self, where: ConversationFilter, *, after: tuple[int, str] | None, limit: int
    ) -> list[ConversationSummary]:
        """Contacts with at least one message, most recent conversation first, after the key
        `(last_message_at, id)`. A contact whose first message was refused (quota) has nothing to show yet."""
        clauses = ["c.last_message_at IS NOT NULL"]
        params: list[Any] = []
        if where.account_id is not None:
            clauses.append("c.account_id = ?")
            params.append(where.account_id)
        if where.platform is not None:
            clauses.append("c.platform = ?")
            params.append(where.platform)
        if where.bot_id is not None:
            clauses.append("c.bot_id = ?")
            params.append(where.bot_id)
        if where.q:
            # The message search walks the contact's messages through the (contact_id, seq) index; the page
            # stops as soon as it is full, so a common word is cheap and a rare one costs one pass.
            clauses.append(
                "(casefold(c.external_id) LIKE casefold(?) ESCAPE '!' OR EXISTS (SELECT 1 FROM messages q"
                " WHERE q.contact_id = c.id AND casefold(q.content) LIKE casefold(?) ESCAPE '!'))"
            )
            pattern = _like_pattern(where.q)
            params += [pattern, pattern]
        if after is not None:
            clauses.append("(c.last_message_at < ? OR (c.last_message_at = ? AND c.id < ?))")
            params += [after[0], after[0], after[1]]
        rows = await self._listing_db.fetch_all(
            f"{_SUMMARY} WHERE {' AND '.join(clauses)} ORDER BY c.last_message_at DESC, c.id DESC LIMIT ?",
            (*params, limit),
        )
        return [_summary(r) for r in rows]

    async def get(self, contact_id: str, *, account_id: str | None) -> ConversationSummary:
        """One contact; another account's (when `account_id` is given) is not found, like a missing one."""
        sql = f"{_SUMMARY} WHERE c.id = ?"
        params: tuple[Any, ...] = (contact_id,)
        if account_id is not None:
            sql += " AND c.account_id = ?"
            params += (account_id,)
        row = await self._db.fetch_one(sql, params)
        if row is None:
            raise NotFound("conversation")
        return _summary(row)

    async def messages(self, contact_id: str, *, after_seq: int | None, limit: int) -> list[MessageView]:
        """Oldest first, after message number `after_seq`."""
        rows = await self._db.fetch_all(
            "SELECT m.id, m.seq, m.role, m.content, m.tokens, m.created_at, f.rating, m.author, m.note FROM messages m"
            " LEFT JOIN feedback f ON f.message_id = m.id WHERE m.contact_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?",
            (contact_id, after_seq or 0, limit),
        )
        return [from_row(MessageView, r) for r in rows]

    async def message(self, message_id: str) -> MessageView:
        row = await self._db.fetch_one(
            "SELECT m.id, m.seq, m.role, m.content, m.tokens, m.created_at, f.rating, m.author, m.note FROM messages m"
            " LEFT JOIN feedback f ON f.message_id = m.id WHERE m.id = ?",
            (message_id,),
        )
        if row is None:
            raise NotFound("message")
        return from_row(MessageView, row)

    async def live_channels(self, summary: ConversationSummary) -> list[str]:
        """The connected channels this conversation runs on (its bot's, on its platform)."""
        rows = await self._db.fetch_all(
            "SELECT id FROM channels WHERE bot_id = ? AND platform = ? AND disconnected_at IS NULL ORDER BY id",
            (summary.bot_id, summary.platform),
        )
        return [r["id"] for r in rows]
