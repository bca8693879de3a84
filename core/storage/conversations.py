"""Contacts (end customers of a bot) and the messages of their conversation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.clock import Clock
from core.errors import Conflict
from core.ids import new_id
from core.models import Contact, ImagePart, StoredMessage
from core.storage.activity import record_conversation_started
from core.storage.db import Database, Row, Transaction

_CONTACT = "id, account_id, bot_id, platform, external_id, created_at"
_MESSAGE = "id, contact_id, seq, role, content, tokens, created_at, note, encoding"
# The newest messages (at most LIMIT) whose running cost, newest first, is within a budget (ConversationStore.recent).
# The LIMIT comes first, in its own subquery: SQLite would otherwise sum the window over the whole conversation.
_WITHIN = (
    f"SELECT {_MESSAGE} FROM (SELECT {_MESSAGE},"
    " SUM(CASE WHEN encoding = ? THEN tokens ELSE 0 END + 3) OVER (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING) AS reach"
    f" FROM (SELECT {_MESSAGE} FROM messages WHERE contact_id = ? ORDER BY seq DESC LIMIT ?) newest) counted"
    " WHERE reach <= ? ORDER BY seq DESC"
)
# The messages whose photos a conversation keeps (a bot's keep_images): its newest, as later turns show no more.
KEPT_IMAGES = 4


@dataclass(frozen=True, slots=True)
class NewMessage:
    role: str  # user | assistant | agent
    content: str
    tokens: int
    encoding: str | None = None  # the tokenizer `tokens` was counted with (core/tokens.py); None: unknown
    author: str | None = None  # agent: the person (the JWT's sub)
    note: str | None = None  # paused | undeliverable (core/storage/migrations.py, migration 8)
    images: tuple[ImagePart, ...] = ()  # photos kept with the message (a bot's keep_images)


def _contact(row: Row) -> Contact:
    return Contact(
        id=row["id"],
        account_id=row["account_id"],
        bot_id=row["bot_id"],
        platform=row["platform"],
        external_id=row["external_id"],
        created_at=int(row["created_at"]),
    )


def _message(row: Row) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        contact_id=row["contact_id"],
        seq=int(row["seq"]),
        role=row["role"],
        content=row["content"],
        tokens=int(row["tokens"]),
        created_at=int(row["created_at"]),
        note=row["note"],
        encoding=row["encoding"],
    )


class ConversationStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def contact(self, account_id: str, bot_id: str, platform: str, external_id: str) -> Contact:
        """The contact for this customer of this bot, created on first contact."""
        key = (account_id, bot_id, platform, external_id)
        where = "account_id = ? AND bot_id = ? AND platform = ? AND external_id = ?"
        found = await self._db.lookup(f"SELECT {_CONTACT} FROM contacts WHERE {where}", key)
        if found:
            return _contact(found[0])
        now = self._clock.now_ms()

        async def create(tx: Transaction) -> Contact:
            created = await tx.fetch_one(
                f"INSERT INTO contacts ({_CONTACT}) VALUES (?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT (account_id, bot_id, platform, external_id) DO NOTHING RETURNING {_CONTACT}",
                (new_id("con"), *key, now),
            )
            if created is None:  # created a moment ago by another turn
                found = await tx.fetch_one(f"SELECT {_CONTACT} FROM contacts WHERE {where}", key)
                assert found is not None
                return _contact(found)
            contact = _contact(created)
            await record_conversation_started(tx, contact)  # the dashboard feed shows each new conversation once
            return contact

        return await self._db.run(create)

    async def recent(
        self, contact_id: str, limit: int, *, within: int | None = None, encoding: str | None = None
    ) -> list[StoredMessage]:
        """The newest `limit` messages of a conversation, oldest first, from the start of a turn. With `within` (a
        prompt's token budget), only those that may fit in it: a message is left out when the stored counts of it
        and of every newer message (counted with `encoding`; one counted otherwise as 0), each with the 3 tokens
        any message costs, already pass the budget. Those counts never exceed what the prompt counts, so nothing
        that fits is left out."""
        if within is None:
            rows = await self._db.lookup(
                f"SELECT {_MESSAGE} FROM messages WHERE contact_id = ? ORDER BY seq DESC LIMIT ?", (contact_id, limit)
            )
        else:
            rows = await self._db.lookup(_WITHIN, (encoding, contact_id, limit, within))
        messages = [_message(r) for r in reversed(rows)]
        # A cut through a turn (older messages left out) would leave replies without their question: the prompt
        # takes whole turns, so they go too.
        start = 0
        while messages and messages[0].seq > 1 and start < len(messages) and messages[start].role != "user":
            start += 1
        return messages[start:]

    async def append(
        self, tx: Transaction, contact: Contact, messages: Sequence[NewMessage], *, request_id: str | None
    ) -> list[str]:
        """Append messages in order, inside the caller's transaction (with the charge for them); their ids."""
        now = self._clock.now_ms()
        row = await tx.fetch_one(
            "UPDATE contacts SET message_count = message_count + ?, last_message_at = ? WHERE id = ?"
            " RETURNING message_count",
            (len(messages), now, contact.id),
        )
        if row is None:  # erased while the reply was being written: the erasure wins, nothing is stored
            raise Conflict("this conversation was erased while the reply was being written")
        first_seq = int(row["message_count"]) - len(messages) + 1
        values: list[object] = []
        ids = [new_id("msg") for _ in messages]
        for offset, message in enumerate(messages):
            values += [
                ids[offset],
                contact.account_id,
                contact.bot_id,
                contact.id,
                first_seq + offset,
                message.role,
                message.content,
                message.tokens,
                request_id,
                now,
                message.author,
                message.note,
                message.encoding,
            ]
        await tx.defer(  # with the caller's next statement or its commit
            "INSERT INTO messages (id, account_id, bot_id, contact_id, seq, role, content, tokens, request_id,"
            " created_at, author, note, encoding) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(messages)),
            values,
        )
        kept = [
            (ids[n], p, contact.id, first_seq + n, i.url, i.width, i.height)
            for n, m in enumerate(messages)
            for p, i in enumerate(m.images)
        ]
        if kept:
            await tx.defer(
                "INSERT INTO message_images (message_id, position, contact_id, seq, url, width, height) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(kept)),
                [value for row in kept for value in row],
            )
            # Only the newest few can ever be shown again: the older ones are not kept.
            await tx.defer(
                "DELETE FROM message_images WHERE contact_id = ? AND seq < (SELECT MIN(seq) FROM (SELECT DISTINCT seq"
                " FROM message_images WHERE contact_id = ? ORDER BY seq DESC LIMIT ?) AS newest)",
                (contact.id, contact.id, KEPT_IMAGES),
            )
        return ids

    async def images(self, contact_id: str) -> dict[str, tuple[ImagePart, ...]]:
        """The photos kept in a conversation (its newest KEPT_IMAGES messages' at most), by message id."""
        rows = await self._db.fetch_all(
            "SELECT message_id, url, width, height FROM message_images WHERE contact_id = ? ORDER BY seq, position",
            (contact_id,),
        )
        found: dict[str, tuple[ImagePart, ...]] = {}
        for row in rows:
            image = ImagePart(row["url"], int(row["width"]), int(row["height"]))
            found[row["message_id"]] = (*found.get(row["message_id"], ()), image)
        return found
