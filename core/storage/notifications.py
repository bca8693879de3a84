"""What an account is told, by a signed POST to the endpoint it set: an outbox.

A notification is written in the commit of what it tells (a handoff), and only when the account has an endpoint;
the housekeeping leader sends it (core/notifier.py), retrying with backoff, so a slow or broken endpoint never
holds a turn. Rows are kept for the account to see how its endpoint fares (GET .../notifications), the newest
NOTIFICATIONS_KEPT of them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from core.clock import Clock
from core.errors import NotFound
from core.fields import EpochMs
from core.ids import new_id
from core.models import Record
from core.secrets import SecretBox
from core.storage.db import Database, Transaction
from core.storage.records import from_row

NOTIFICATIONS_KEPT = 1000


class Delivery(Record):
    id: str
    event: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: EpochMs | None = Field(description="pending: when it is tried next")
    last_error: str | None = Field(description="why the last attempt failed")
    created_at: EpochMs
    delivered_at: EpochMs | None


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    sealed_secret: str  # SecretBox-sealed


@dataclass(frozen=True, slots=True)
class Outgoing:
    id: str
    account_id: str
    event: str
    body: str
    attempts: int  # before this one
    endpoint: Endpoint


class NotificationStore:
    def __init__(self, db: Database, clock: Clock, box: SecretBox) -> None:
        self._db = db
        self._clock = clock
        self._box = box  # seals the signing secrets (SECRETS_KEY), as channel secrets are sealed

    async def set_endpoint(self, account_id: str, url: str) -> str:
        """The account's endpoint, with a new signing secret (the answer; stored sealed, never shown again).
        SecretsError when SECRETS_KEY is not set."""
        secret = "nxs_" + secrets.token_urlsafe(32)
        sealed = self._box.seal(secret)
        if not await self._db.execute(
            "UPDATE accounts SET notify_url = ?, notify_secret = ?, updated_at = ? WHERE id = ?",
            (url, sealed, self._clock.now_ms(), account_id),
        ):
            raise NotFound("account")
        return secret

    def open_secret(self, endpoint: Endpoint) -> str:
        return self._box.open(endpoint.sealed_secret)

    async def reseal_all(self) -> int:
        """Re-encrypt every account's signing secret under the first key of SECRETS_KEY (key rotation)."""
        async with self._db.transaction() as tx:
            rows = await tx.fetch_all(
                "SELECT id, notify_secret FROM accounts WHERE notify_secret IS NOT NULL" + tx.dialect.locked()
            )
            for row in rows:
                await tx.execute(
                    "UPDATE accounts SET notify_secret = ? WHERE id = ?",
                    (self._box.reseal(str(row["notify_secret"])), row["id"]),
                )
        return len(rows)

    async def clear_endpoint(self, account_id: str) -> None:
        """No endpoint any more: what waited to be sent is given up on, with the reason."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE accounts SET notify_url = NULL, notify_secret = NULL, updated_at = ? WHERE id = ?",
                (self._clock.now_ms(), account_id),
            )
            await tx.execute(
                "UPDATE notifications SET state = 'failed', last_error = 'the endpoint was removed'"
                " WHERE account_id = ? AND state = 'pending'",
                (account_id,),
            )

    async def endpoint(self, account_id: str) -> Endpoint | None:
        row = await self._db.fetch_one("SELECT notify_url, notify_secret FROM accounts WHERE id = ?", (account_id,))
        if row is None or row["notify_url"] is None:
            return None
        return Endpoint(str(row["notify_url"]), str(row["notify_secret"]))

    async def enqueue(self, tx: Transaction, account_id: str, event: str, payload: Mapping[str, Any]) -> str | None:
        """In the caller's commit: the notification, when the account has an endpoint (else None, nothing kept).
        The body carries its own id, event and time, so a receiver can drop a repeat (a delivery is at least
        once: an answer lost on the way is sent again)."""
        row = await tx.fetch_one("SELECT notify_url FROM accounts WHERE id = ?", (account_id,))
        if row is None or row["notify_url"] is None:
            return None
        now = self._clock.now_ms()
        notification_id = new_id("ntf")
        body = json.dumps(
            {"id": notification_id, "event": event, "created_at": now, "account_id": account_id, **payload},
            separators=(",", ":"),
        )
        await tx.execute(
            "INSERT INTO notifications (id, account_id, event, body, state, attempts, next_attempt_at, created_at)"
            " VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
            (notification_id, account_id, event, body, now, now),
        )
        return notification_id

    async def due(self, limit: int) -> list[Outgoing]:
        """Pending notifications whose time has come, oldest first, with their account's endpoint."""
        rows = await self._db.fetch_all(
            "SELECT n.id, n.account_id, n.event, n.body, n.attempts, a.notify_url, a.notify_secret FROM notifications n"
            " JOIN accounts a ON a.id = n.account_id WHERE n.state = 'pending' AND n.next_attempt_at <= ?"
            " AND a.notify_url IS NOT NULL ORDER BY n.next_attempt_at, n.id LIMIT ?",
            (self._clock.now_ms(), limit),
        )
        return [
            Outgoing(
                str(r["id"]),
                str(r["account_id"]),
                str(r["event"]),
                str(r["body"]),
                int(r["attempts"]),
                Endpoint(str(r["notify_url"]), str(r["notify_secret"])),
            )
            for r in rows
        ]

    async def delivered(self, notification_id: str) -> None:
        now = self._clock.now_ms()
        await self._db.execute(
            "UPDATE notifications SET state = 'delivered', attempts = attempts + 1, delivered_at = ?,"
            " last_error = NULL WHERE id = ? AND state = 'pending'",
            (now, notification_id),
        )

    async def retry(self, notification_id: str, delay_ms: int, error: str) -> None:
        await self._db.execute(
            "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
            " WHERE id = ? AND state = 'pending'",
            (self._clock.now_ms() + delay_ms, error[:500], notification_id),
        )

    async def give_up(self, notification_id: str, error: str) -> None:
        await self._db.execute(
            "UPDATE notifications SET state = 'failed', attempts = attempts + 1, last_error = ?"
            " WHERE id = ? AND state = 'pending'",
            (error[:500], notification_id),
        )

    async def recent(self, account_id: str, limit: int) -> list[Delivery]:
        rows = await self._db.fetch_all(
            "SELECT id, event, state, attempts, next_attempt_at, last_error, created_at, delivered_at"
            " FROM notifications WHERE account_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            (account_id, limit),
        )
        return [
            from_row(Delivery, r, next_attempt_at=int(r["next_attempt_at"]) if r["state"] == "pending" else None)
            for r in rows
        ]

    async def prune(self) -> int:
        """Each account keeps its newest NOTIFICATIONS_KEPT finished notifications."""
        return await self._db.execute(
            "DELETE FROM notifications WHERE state <> 'pending' AND id IN (SELECT id FROM (SELECT id, ROW_NUMBER()"
            " OVER (PARTITION BY account_id ORDER BY created_at DESC, id DESC) AS n FROM notifications) ranked"
            " WHERE n > ?)",
            (NOTIFICATIONS_KEPT,),
        )
