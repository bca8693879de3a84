"""Idempotency keys of people's replies (POST /api/conversations/{contact_id}/messages, `Idempotency-Key`).

A client that lost the answer to a reply sends the request again with the same key; the customer must not get the
text twice. A key belongs to one conversation and one text (the same key with another text is refused) and goes
through phases:
  claimed  - taken by a request that has not asked the platform yet; a claim left behind by a request that died
             before it did (STALE_CLAIM_MS) may be taken over;
  sending  - the platform was asked: from here the text may have gone out, so the key is never taken over;
  unknown  - the platform did not say whether it sent the text (a timeout, a server error), or the request died
             while sending (a `sending` key older than STALE_CLAIM_MS): a repeat is told so, never sent;
  sent     - stored, in the commit that stores the message (message_id): a repeat answers that message;
  partial  - some parts of a long text went out and the rest was refused (message_id: what went out).
A request whose text certainly did not go out (a closed window, a refusal) drops its key, so the person may try
again. Keys are erased with their conversation and purged with the inbox's finished events (inbox_queue.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from core.clock import Clock
from core.storage.db import Database, Transaction

# A request takes well under this from its claim to asking the platform; a claim older than this was left behind.
STALE_CLAIM_MS = 60_000


@dataclass(frozen=True, slots=True)
class KeyClaim:
    state: Literal["claimed", "in_flight", "unknown", "sent", "partial", "other_text"]
    message_id: str | None = None  # sent, partial: the message the first request stored


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class ReplyKeys:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def claim(self, contact_id: str, key: str, text: str) -> KeyClaim:
        """Take the key for this text; or what became of the request that took it first."""
        digest = text_digest(text)
        for _ in range(3):  # a key dropped or taken over between our two statements: look again
            now = self._clock.now_ms()
            if await self._db.execute_returning(
                "INSERT INTO agent_reply_keys (contact_id, key, digest, phase, created_at, updated_at)"
                " VALUES (?, ?, ?, 'claimed', ?, ?) ON CONFLICT (contact_id, key) DO NOTHING RETURNING key",
                (contact_id, key, digest, now, now),
            ):
                return KeyClaim("claimed")
            row = await self._db.fetch_one(
                "SELECT digest, phase, message_id, updated_at FROM agent_reply_keys WHERE contact_id = ? AND key = ?",
                (contact_id, key),
            )
            if row is None:
                continue
            if row["digest"] != digest:
                return KeyClaim("other_text")
            phase, updated_at = row["phase"], int(row["updated_at"])
            if phase in ("sent", "partial"):
                return KeyClaim(phase, row["message_id"])
            stale = now - updated_at > STALE_CLAIM_MS
            if phase == "unknown" or (phase == "sending" and stale):
                return KeyClaim("unknown")
            if phase == "sending":
                return KeyClaim("in_flight")
            if not stale:
                return KeyClaim("in_flight")
            if await self._db.execute(  # left behind before anything was sent: ours, if nobody took it first
                "UPDATE agent_reply_keys SET updated_at = ? WHERE contact_id = ? AND key = ? AND phase = 'claimed'"
                " AND updated_at = ?",
                (now, contact_id, key, updated_at),
            ):
                return KeyClaim("claimed")
        return KeyClaim("in_flight")

    async def sending(self, contact_id: str, key: str) -> None:
        """The platform is about to be asked: from now on the text may go out, and the key is never taken over."""
        await self._db.execute(
            "UPDATE agent_reply_keys SET phase = 'sending', updated_at = ? WHERE contact_id = ? AND key = ?",
            (self._clock.now_ms(), contact_id, key),
        )

    async def complete(self, tx: Transaction, contact_id: str, key: str, message_id: str, *, partial: bool) -> None:
        """In the commit that stores the message."""
        await tx.defer(
            "UPDATE agent_reply_keys SET phase = ?, message_id = ?, updated_at = ? WHERE contact_id = ? AND key = ?",
            ("partial" if partial else "sent", message_id, self._clock.now_ms(), contact_id, key),
        )

    async def unknown(self, contact_id: str, key: str) -> None:
        """The platform was asked and did not say whether it sent the text (a timeout, a server error): a repeat is
        told so, never sent."""
        await self._db.execute(
            "UPDATE agent_reply_keys SET phase = 'unknown', updated_at = ? WHERE contact_id = ? AND key = ?"
            " AND phase = 'sending'",
            (self._clock.now_ms(), contact_id, key),
        )

    async def release(self, contact_id: str, key: str) -> None:
        """Nothing went out under the key: it is free again."""
        await self._db.execute(
            "DELETE FROM agent_reply_keys WHERE contact_id = ? AND key = ? AND phase IN ('claimed', 'sending')",
            (contact_id, key),
        )
