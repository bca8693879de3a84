"""Contacts (end customers of a bot) and the messages of their conversation."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field

from core.clock import Clock
from core.errors import Conflict
from core.ids import new_id
from core.models import Contact, ImagePart, StoredMessage
from core.storage.activity import record_conversation_started
from core.storage.db import Database, Prefetched, Row, Transaction

_CONTACT = "id, account_id, bot_id, platform, external_id, created_at"
_CONTACT_READ = f"{_CONTACT}, message_count"
_CONTACT_KEY = "account_id = ? AND bot_id = ? AND platform = ? AND external_id = ?"
_MESSAGE = "id, contact_id, seq, role, content, tokens, created_at, note, encoding"
# A conversation's messages after a seq, newest first (at most LIMIT): the newest of them, or what a remembered
# history lacks (ConversationStore.recent).
_AFTER = f"SELECT {_MESSAGE} FROM messages WHERE contact_id = ? AND seq > ? ORDER BY seq DESC LIMIT ?"
# About how many bytes the remembered histories of a process may hold in all: a message's text, and what each
# message and each conversation costs besides (its objects, ids, time stamps, and what the prompt builder made of
# it: `_History.derived`). 8 MB hold about 15,000 short chat messages; the conversations used longest ago are
# forgotten first.
REMEMBERED_BYTES = 8_000_000
_MESSAGE_BYTES = 450
# A conversation nobody has written in for this long is forgotten (as is one erased in another process: its
# contact is gone, so its history is never asked for again).
REMEMBERED_IDLE_MS = 15 * 60 * 1000
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
        message_count=int(row["message_count"]),
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


def _bytes(messages: Sequence[StoredMessage]) -> int:
    return sum(len(m.content) + _MESSAGE_BYTES for m in messages)


@dataclass(slots=True)
class _History:
    """The newest messages of a conversation (at most `limit`), oldest first, as a turn last read them."""

    limit: int
    messages: tuple[StoredMessage, ...] = ()
    used: int = 0  # epoch ms of the last turn that read it
    size: int = _MESSAGE_BYTES  # about what it holds, in bytes (REMEMBERED_BYTES)
    # What a turn's prompt builder made of each message, by message id (core/memory.py: the message as the model
    # is sent it), so that the next turn need not make it again: kept, and forgotten, with the messages (an erased
    # conversation's at once). Messages never change once stored.
    derived: dict[str, object] = field(default_factory=dict)

    def extended(self, more: Sequence[StoredMessage], used: int) -> _History:
        """With `more` (the messages right after these) at its end, the oldest beyond `limit` left out; its size
        made from the difference, not from every message again (this runs each turn)."""
        messages = self.messages + tuple(more)
        cut = max(0, len(messages) - self.limit)
        size = self.size + _bytes(more) - _bytes(messages[:cut])
        derived = self.derived
        for gone in messages[:cut]:
            derived.pop(gone.id, None)
        if len(derived) > 2 * self.limit:  # a turn that read an older history put back what was left out since
            kept = {m.id for m in messages[cut:]}
            derived = {key: value for key, value in derived.items() if key in kept}
        return _History(self.limit, messages[cut:], used, size, derived)

    @property
    def upto(self) -> int:
        return self.messages[-1].seq if self.messages else 0


class ConversationStore:
    """Contacts and their conversations. A turn's history is remembered per conversation (in this process), so the
    next turn reads only the messages stored since, and only after checking the conversation's count of messages:
    messages are only ever appended (each with the next seq, in the commit that counts it), and an erasure deletes
    the contact itself, so a conversation whose count is its remembered history's last seq has nothing else."""

    def __init__(self, db: Database, clock: Clock, *, remembered: int = REMEMBERED_BYTES) -> None:
        self._db = db
        self._clock = clock
        self._remembered = remembered
        self._histories: OrderedDict[str, _History] = OrderedDict()  # by contact id, the least recently used first
        self._held = 0  # the sizes of _histories

    async def contact(self, account_id: str, bot_id: str, platform: str, external_id: str) -> Contact:
        """The contact for this customer of this bot. On first contact, a new one that is not stored yet
        (`stored` False): the turn stores it in its first commit (`created`), so a new customer's turn commits no
        more often than a returning one's."""
        key = (account_id, bot_id, platform, external_id)
        found = await self._db.lookup(f"SELECT {_CONTACT_READ} FROM contacts WHERE {_CONTACT_KEY}", key)
        if found:
            return _contact(found[0])
        now = self._clock.now_ms()
        return Contact(new_id("con"), account_id, bot_id, platform, external_id, now, stored=False)

    async def created(self, tx: Transaction, contact: Contact) -> Contact:
        """`contact` as stored, inside the caller's transaction: a new one is stored here (its conversation shown
        once in the dashboard's feed). When another turn of the same customer stored it a moment ago, that one is
        the contact (its id is not this one's)."""
        if contact.stored:
            return contact
        key = (contact.account_id, contact.bot_id, contact.platform, contact.external_id)
        created = await tx.fetch_one(
            f"INSERT INTO contacts ({_CONTACT}) VALUES (?, ?, ?, ?, ?, ?)"
            f" ON CONFLICT (account_id, bot_id, platform, external_id) DO NOTHING RETURNING {_CONTACT_READ}",
            (contact.id, *key, contact.created_at),
        )
        if created is None:  # stored a moment ago by another turn
            found = await tx.fetch_one(f"SELECT {_CONTACT_READ} FROM contacts WHERE {_CONTACT_KEY}", key)
            assert found is not None
            return _contact(found)
        stored = _contact(created)
        await record_conversation_started(tx, stored)  # the dashboard feed shows each new conversation once
        return stored

    async def stored(self, contact: Contact) -> Contact:
        """`contact` as stored, in a commit of its own when it is new (`created`)."""
        if contact.stored:
            return contact
        return await self._db.run(lambda tx: self.created(tx, contact), small=True)

    async def recent(
        self,
        contact_id: str,
        limit: int,
        *,
        within: int | None = None,
        encoding: str | None = None,
        count: int | None = None,
    ) -> list[StoredMessage]:
        """The newest `limit` messages of a conversation, oldest first, from the start of a turn. With `within` (a
        prompt's token budget), only those that may fit in it: a message is left out when the stored counts of it
        and of every newer message (counted with `encoding`; one counted otherwise as 0), each with the 3 tokens
        any message costs, already pass the budget. Those counts never exceed what the prompt counts, so nothing
        that fits is left out. `count`: the conversation's count of messages, when the turn has just read its
        contact (`Contact.message_count`); otherwise it is read here."""
        if within is None:
            rows = await self._db.lookup(
                f"SELECT {_MESSAGE} FROM messages WHERE contact_id = ? ORDER BY seq DESC LIMIT ?", (contact_id, limit)
            )
            messages = [_message(r) for r in reversed(rows)]
        else:
            newest = await self._newest(contact_id, limit, count)
            start, reach = len(newest), 0
            while start > 0:
                message = newest[start - 1]
                reach += (message.tokens if encoding is not None and message.encoding == encoding else 0) + 3
                if reach > within:
                    break
                start -= 1
            messages = list(newest[start:])
        # A cut through a turn (older messages left out) would leave replies without their question: the prompt
        # takes whole turns, so they go too.
        start = 0
        while messages and messages[0].seq > 1 and start < len(messages) and messages[start].role != "user":
            start += 1
        return messages[start:]

    async def _newest(self, contact_id: str, limit: int, count: int | None) -> tuple[StoredMessage, ...]:
        """The newest `limit` messages of a conversation, oldest first: what this process remembers of it, and the
        messages stored since (by any process), read only when its count of messages says there are some."""
        if count is None:
            found = await self._db.lookup("SELECT message_count FROM contacts WHERE id = ?", (contact_id,))
            if not found:  # erased
                self._forget(contact_id)
                return ()
            count = int(found[0]["message_count"])
        if count == 0:  # a new customer
            return ()
        now = self._clock.now_ms()
        self._forget_idle(now)
        known = self._histories.get(contact_id)
        if known is not None and known.limit == limit and known.upto >= count:
            # Everything the count says there is (or more: a turn that read the contact later has been here since).
            known.used = now
            self._histories.move_to_end(contact_id)
            return known.messages
        if known is None or known.limit != limit:
            known = _History(limit)
        rows = await self._db.lookup(_AFTER, (contact_id, known.upto, limit))
        since = tuple(_message(r) for r in reversed(rows))
        # All the messages after the remembered ones (unless there were `limit` or more of them: then the newest).
        history = (known if len(since) < limit else _History(limit)).extended(since, now)
        current = self._histories.get(contact_id)
        if current is None or current.upto <= history.upto:  # a turn that read earlier does not put back less
            self._keep(contact_id, history)
        return history.messages

    def _keep(self, contact_id: str, history: _History) -> None:
        """Remember `history` (the newest of all), forgetting the least recently used beyond the bound."""
        self._forget(contact_id)
        self._histories[contact_id] = history
        self._held += history.size
        while self._held > self._remembered and len(self._histories) > 1:
            self._forget(next(iter(self._histories)))

    def derived(self, contact_id: str) -> MutableMapping[str, object]:
        """Where a turn's prompt builder keeps what it made of this conversation's messages, by message id (see
        `_History.derived`): the remembered history's, or a new one that nothing keeps."""
        known = self._histories.get(contact_id)
        return known.derived if known is not None else {}

    def forget(self, contact_ids: Sequence[str]) -> None:
        """Drop what this process remembers of these conversations (they were erased)."""
        for contact_id in contact_ids:
            self._forget(contact_id)

    def _forget(self, contact_id: str) -> None:
        gone = self._histories.pop(contact_id, None)
        if gone is not None:
            self._held -= gone.size

    def _forget_idle(self, now: int) -> None:
        while self._histories:
            oldest = next(iter(self._histories.values()))
            if now - oldest.used < REMEMBERED_IDLE_MS:
                return
            self._forget(next(iter(self._histories)))

    def committed(self, contact_id: str, stored: Sequence[StoredMessage]) -> None:
        """Messages `append_stored` wrote, once their transaction has committed: the conversation's remembered
        history takes them when they follow it directly (nobody else wrote in between), so the next turn reads none."""
        known = self._histories.get(contact_id)
        if known is None or not stored or stored[0].seq != known.upto + 1:
            return
        self._keep(contact_id, known.extended(stored, self._clock.now_ms()))

    async def append(
        self, tx: Transaction, contact: Contact, messages: Sequence[NewMessage], *, request_id: str | None
    ) -> list[str]:
        """Append messages in order, inside the caller's transaction (with the charge for them); their ids."""
        return [m.id for m in await self.append_stored(tx, contact, messages, request_id=request_id)]

    async def append_stored(
        self, tx: Transaction, contact: Contact, messages: Sequence[NewMessage], *, request_id: str | None
    ) -> list[StoredMessage]:
        """`append`, giving back the messages as stored (for `committed`, once the transaction has committed)."""
        return await (await self.append_later(tx, contact, messages, request_id=request_id)).stored()

    async def append_later(
        self, tx: Transaction, contact: Contact, messages: Sequence[NewMessage], *, request_id: str | None
    ) -> PendingAppend:
        """`append_stored` in two steps: the conversation's count is sent with the transaction's next statement
        (one round trip less on PostgreSQL), and `PendingAppend.stored()`, which the caller awaits before it
        commits, writes the messages after it and gives them back as stored."""
        now = self._clock.now_ms()
        counted = await tx.prefetch(
            "UPDATE contacts SET message_count = message_count + ?, last_message_at = ? WHERE id = ?"
            " RETURNING message_count",
            (len(messages), now, contact.id),
        )
        return PendingAppend(tx, contact, tuple(messages), request_id, now, counted)

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


@dataclass(frozen=True, slots=True)
class PendingAppend:
    """Messages being appended (`ConversationStore.append_later`): the conversation counted, not yet written."""

    tx: Transaction
    contact: Contact
    messages: tuple[NewMessage, ...]
    request_id: str | None
    now: int
    counted: Prefetched

    async def stored(self) -> list[StoredMessage]:
        """The messages written in the caller's transaction, after the count; as stored."""
        tx, contact, messages, request_id, now = self.tx, self.contact, self.messages, self.request_id, self.now
        rows = await self.counted.rows()
        if not rows:  # erased while the reply was being written: the erasure wins, nothing is stored
            raise Conflict("this conversation was erased while the reply was being written")
        first_seq = int(rows[0]["message_count"]) - len(messages) + 1
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
        return [
            StoredMessage(
                ids[n],
                contact.id,
                first_seq + n,
                m.role,  # type: ignore[arg-type]  # user | assistant | agent, as NewMessage says
                m.content,
                m.tokens,
                now,
                m.note,
                m.encoding,
            )
            for n, m in enumerate(messages)
        ]
