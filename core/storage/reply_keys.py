"""Idempotency keys of people's replies (POST /api/conversations/{contact_id}/messages, `Idempotency-Key`).

A client that lost the answer to a reply sends the request again with the same key; the customer must not get the
text twice. A key is claimed before anything is sent, completed with the stored message's id in the commit that
stores it, and dropped when nothing went out, so the person may try again. A key belongs to one conversation and
one text: the same key with another text is refused. Keys are erased with their conversation and purged with the
inbox's finished events (core/storage/inbox_queue.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from core.clock import Clock
from core.storage.db import Database, Transaction


@dataclass(frozen=True, slots=True)
class KeyClaim:
    state: Literal["claimed", "sent", "sending", "other_text"]
    message_id: str | None = None  # sent: the message the first request stored


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class ReplyKeys:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def claim(self, contact_id: str, key: str, text: str) -> KeyClaim:
        """Take the key for this text; or what became of the request that took it first."""
        digest = text_digest(text)
        taken = await self._db.fetch_one(
            "INSERT INTO agent_reply_keys (contact_id, key, digest, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (contact_id, key) DO NOTHING RETURNING key",
            (contact_id, key, digest, self._clock.now_ms()),
        )
        if taken is not None:
            return KeyClaim("claimed")
        row = await self._db.fetch_one(
            "SELECT digest, message_id FROM agent_reply_keys WHERE contact_id = ? AND key = ?", (contact_id, key)
        )
        if row is None:  # dropped a moment ago by a request that sent nothing: this one may send
            return await self.claim(contact_id, key, text)
        if row["digest"] != digest:
            return KeyClaim("other_text")
        if row["message_id"] is None:
            return KeyClaim("sending")
        return KeyClaim("sent", row["message_id"])

    async def complete(self, tx: Transaction, contact_id: str, key: str, message_id: str) -> None:
        await tx.defer(
            "UPDATE agent_reply_keys SET message_id = ? WHERE contact_id = ? AND key = ?", (message_id, contact_id, key)
        )

    async def release(self, contact_id: str, key: str) -> None:
        """Nothing was sent under the key: it is free again."""
        await self._db.execute(
            "DELETE FROM agent_reply_keys WHERE contact_id = ? AND key = ? AND message_id IS NULL", (contact_id, key)
        )
