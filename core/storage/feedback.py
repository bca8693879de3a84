"""Ratings of bot replies: one per reply, a later rating replacing the earlier one.

A rating is checked and written in one transaction, so a reply erased at the same moment cannot leave a rating
pointing at nothing. The dashboard's metrics count these rows by account and time (table `feedback`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import Field

from core.clock import Clock
from core.errors import GatewayError, NotFound
from core.fields import EpochMs
from core.ids import new_id
from core.models import Record
from core.storage.db import Database, Row
from core.storage.records import from_row

RatingValue = Literal["up", "down"]
RATINGS: tuple[str, ...] = get_args(RatingValue)
_COLUMNS = "id, account_id, bot_id, contact_id, message_id, rating, comment, created_by, created_at, updated_at"


class NotABotReply(GatewayError):
    """The message exists but is the customer's own, which has nothing to rate."""


@dataclass(frozen=True, slots=True)
class Rating:
    message_id: str
    rating: str  # up | down
    comment: str | None
    created_by: str  # a JWT subject, or "api_key:<key prefix>"


class Feedback(Record):
    id: str
    message_id: str
    account_id: str
    bot_id: str
    contact_id: str
    rating: RatingValue
    comment: str | None
    created_by: str | None = Field(exclude=True)  # a JWT subject or "api_key:<prefix>": for the audit, not shown
    created_at: EpochMs
    updated_at: EpochMs


def _feedback(row: Row) -> Feedback:
    return from_row(Feedback, row)


class FeedbackStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def reply_account(self, message_id: str, *, account_id: str | None) -> str:
        """The account of a stored message, or NotFound (also for another account's when `account_id` is given)."""
        sql = "SELECT account_id FROM messages WHERE id = ?"
        params: tuple[str, ...] = (message_id,)
        if account_id is not None:
            sql += " AND account_id = ?"
            params += (account_id,)
        row = await self._db.fetch_one(sql, params)
        if row is None:
            raise NotFound("message")
        return str(row["account_id"])

    async def rate(self, rating: Rating, *, account_id: str | None) -> tuple[Feedback, bool]:
        """Store the rating of one bot reply; True when it is the reply's first rating, False when it replaced one.

        With `account_id`, a reply of another account is not found, exactly like a reply that does not exist.
        """
        now = self._clock.now_ms()
        sql = "SELECT account_id, bot_id, contact_id, role FROM messages WHERE id = ?"
        params: tuple[str, ...] = (rating.message_id,)
        if account_id is not None:
            sql += " AND account_id = ?"
            params += (account_id,)
        async with self._db.transaction() as tx:
            # Share-locked: an erasure of this conversation waits for the rating, then deletes it with the reply;
            # a rating after the erasure finds no reply. A rating never outlives its erased reply.
            message = await tx.fetch_one(sql + tx.dialect.locked("share"), params)
            if message is None:
                raise NotFound("message")
            if message["role"] != "assistant":
                raise NotABotReply("only the bot's replies can be rated; this message is the customer's")
            fresh_id = new_id("fbk")
            row = await tx.fetch_one(
                f"INSERT INTO feedback ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (message_id) DO UPDATE SET rating = excluded.rating, comment = excluded.comment,"
                f" created_by = excluded.created_by, updated_at = excluded.updated_at RETURNING {_COLUMNS}",
                (
                    fresh_id,
                    message["account_id"],
                    message["bot_id"],
                    message["contact_id"],
                    rating.message_id,
                    rating.rating,
                    rating.comment,
                    rating.created_by,
                    now,
                    now,
                ),
            )
        assert row is not None
        return _feedback(row), row["id"] == fresh_id
