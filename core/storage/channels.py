"""Channels: a bot's connection to a Facebook Page, an Instagram account or a WhatsApp number.

Access tokens, app secrets and verify tokens are sealed with SECRETS_KEY before they touch the database and
are only ever opened in memory, by the webhook verifier and the Graph sender. `Channel` carries no secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.clock import Clock
from core.errors import Conflict, NotFound
from core.ids import new_id
from core.models import Channel
from core.secrets import SecretBox
from core.storage.activity import record_channel_error
from core.storage.db import Database, Row
from core.storage.doorbell import CHANNELS
from core.storage.recent import Recent
from core.storage.records import from_row

STATUSES = ("active", "needs_reauth", "disabled")
_COLUMNS = (
    "id, account_id, bot_id, platform, external_id, access_token_sealed, app_secret_sealed, verify_token_sealed, "
    "status, status_reason, created_at, updated_at, disconnected_at"
)


@dataclass(frozen=True, slots=True)
class ChannelSecrets:
    """Opened secrets of one channel; repr never shows them."""

    access_token: str = field(repr=False)
    app_secret: str | None = field(repr=False)
    verify_token: str | None = field(repr=False)


def _channel(row: Row) -> Channel:
    return from_row(
        Channel,
        row,
        has_app_secret=row["app_secret_sealed"] is not None,
        has_verify_token=row["verify_token_sealed"] is not None,
    )


class ChannelStore:
    def __init__(self, db: Database, clock: Clock, box: SecretBox) -> None:
        self._db = db
        self._clock = clock
        self._box = box
        # Every change of a channel (a new token, a status, a disconnect, a key rotation) rings CHANNELS.
        self._recent: Recent[str, tuple[Channel, ChannelSecrets]] = Recent(db.doorbell, CHANNELS)

    def require_sealing(self) -> None:
        """SecretsError unless SECRETS_KEY is set: checked before a connect calls Graph."""
        self._box.require()

    async def connect(self, account_id: str, bot_id: str, fields: Mapping[str, Any]) -> Channel:
        sealed = self._seal(fields)  # fails before any write when SECRETS_KEY is missing
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            if await tx.fetch_one(
                "SELECT 1 FROM channels WHERE platform = ? AND external_id = ? AND disconnected_at IS NULL",
                (fields["platform"], fields["external_id"]),
            ):
                raise Conflict(f"this {fields['platform']} id is already connected to a bot; disconnect it first")
            row = await tx.fetch_one(
                f"INSERT INTO channels ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', NULL, ?, ?, NULL)"
                f" RETURNING {_COLUMNS}",
                (
                    new_id("chn"),
                    account_id,
                    bot_id,
                    fields["platform"],
                    fields["external_id"],
                    sealed["access_token_sealed"],
                    sealed.get("app_secret_sealed"),
                    sealed.get("verify_token_sealed"),
                    now,
                    now,
                ),
            )
        assert row is not None
        await self._db.doorbell.ring(CHANNELS)  # every process's directory reloads: deliveries route at once
        return _channel(row)

    async def get(self, channel_id: str) -> Channel:
        return _channel(await self._connected_row(channel_id))

    async def for_bot(self, bot_id: str) -> list[Channel]:
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM channels WHERE bot_id = ? AND disconnected_at IS NULL ORDER BY created_at, id",
            (bot_id,),
        )
        return [_channel(r) for r in rows]

    async def live(self) -> list[tuple[Channel, ChannelSecrets]]:
        """Every connected channel with its opened secrets: what the webhook verifier and router load."""
        rows = await self._db.fetch_all(f"SELECT {_COLUMNS} FROM channels WHERE disconnected_at IS NULL")
        return [(_channel(r), self._open(r)) for r in rows]

    async def get_with_secrets(self, channel_id: str) -> tuple[Channel, ChannelSecrets]:
        """A connected channel and its opened secrets, in one read (the worker needs both for each event)."""
        row = await self._connected_row(channel_id)
        return _channel(row), self._open(row)

    async def current_with_secrets(self, channel_id: str) -> tuple[Channel, ChannelSecrets]:
        """`get_with_secrets` for a turn: kept for a few seconds (opened, as the webhook directory keeps the
        signing secrets), read again after any change (core/storage/recent.py)."""
        return await self._recent.get(channel_id, self.get_with_secrets)

    async def _connected_row(self, channel_id: str) -> Row:
        row = await self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM channels WHERE id = ? AND disconnected_at IS NULL", (channel_id,)
        )
        if row is None:
            raise NotFound("channel")
        return row

    async def secrets(self, channel_id: str) -> ChannelSecrets:
        row = await self._db.fetch_one(f"SELECT {_COLUMNS} FROM channels WHERE id = ?", (channel_id,))
        if row is None:
            raise NotFound("channel")
        return self._open(row)

    async def update(self, channel_id: str, fields: Mapping[str, Any]) -> Channel:
        """Replace secrets and/or set the status; a new access token clears `needs_reauth`."""
        values: dict[str, Any] = dict(self._seal(fields))
        if "status" in fields:
            values["status"] = fields["status"]
            values["status_reason"] = "set by an operator"
        elif "access_token" in fields:
            values["status"] = "active"
            values["status_reason"] = None
        assignments = ", ".join(f"{name} = ?" for name in values)
        async with self._db.transaction() as tx:
            row = await tx.fetch_one(
                f"UPDATE channels SET {assignments}, updated_at = ? WHERE id = ? AND disconnected_at IS NULL"
                f" RETURNING {_COLUMNS}",
                (*values.values(), self._clock.now_ms(), channel_id),
            )
        if row is None:
            raise NotFound("channel")
        await self._db.doorbell.ring(CHANNELS)  # a new app secret verifies in every process at once
        return _channel(row)

    async def reseal_all(self) -> int:
        """Re-encrypt every channel's secrets under the first key of SECRETS_KEY (key rotation); the count."""
        sealed = ("access_token_sealed", "app_secret_sealed", "verify_token_sealed")
        async with self._db.transaction() as tx:
            # Locked: a token replaced meanwhile must not be overwritten with the old one resealed.
            rows = await tx.fetch_all(f"SELECT id, {', '.join(sealed)} FROM channels" + tx.dialect.locked())
            for row in rows:
                await tx.execute(
                    f"UPDATE channels SET {' = ?, '.join(sealed)} = ? WHERE id = ?",
                    (*(None if row[c] is None else self._box.reseal(row[c]) for c in sealed), row["id"]),
                )
        await self._db.doorbell.ring(CHANNELS)
        return len(rows)

    async def set_status(self, channel_id: str, status: str, reason: str) -> None:
        """Set by the sender (190: needs_reauth); the activity feed gets the change in the same commit.

        Whether the status changed is the row count of a conditional UPDATE, not a comparison with a SELECT: on
        PostgreSQL (no BEGIN IMMEDIATE) two workers failing at once would both read the old status, while the
        second conditional UPDATE waits for the first's row lock, re-checks and changes nothing: one feed row.
        """
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            before = await tx.fetch_one(
                "SELECT id, account_id, bot_id, platform, external_id, status FROM channels WHERE id = ?", (channel_id,)
            )
            if before is None:
                return
            changed = await tx.execute(
                "UPDATE channels SET status = ?, status_reason = ?, updated_at = ? WHERE id = ? AND status <> ?",
                (status, reason, now, channel_id, status),
            )
            if changed:
                await record_channel_error(tx, before, status, reason, now)
            else:  # already in that status: only the latest reason is news
                await tx.execute(
                    "UPDATE channels SET status_reason = ?, updated_at = ? WHERE id = ?", (reason, now, channel_id)
                )
        await self._db.doorbell.ring(CHANNELS)

    async def note_error(self, channel_id: str, error: str) -> None:
        """The channel's last failure (a Graph send, a dead letter), shown by GET /api/status/webhooks."""
        await self._db.execute(
            "UPDATE channels SET last_error = ?, last_error_at = ? WHERE id = ?",
            (error[:500], self._clock.now_ms(), channel_id),
        )

    async def disconnect(self, channel_id: str) -> None:
        now = self._clock.now_ms()
        done = await self._db.execute(
            "UPDATE channels SET disconnected_at = ?, updated_at = ? WHERE id = ? AND disconnected_at IS NULL",
            (now, now, channel_id),
        )
        if not done:
            raise NotFound("channel")
        await self._db.doorbell.ring(CHANNELS)

    def _seal(self, fields: Mapping[str, Any]) -> dict[str, str | None]:
        sealed: dict[str, str | None] = {}
        for name in ("access_token", "app_secret", "verify_token"):
            if name in fields:
                value = fields[name]
                sealed[f"{name}_sealed"] = None if value is None else self._box.seal(value)
        return sealed

    def _open(self, row: Row) -> ChannelSecrets:
        def opened(column: str) -> str | None:
            value = row[column]
            return None if value is None else self._box.open(value)

        token = opened("access_token_sealed")
        assert token is not None
        return ChannelSecrets(token, opened("app_secret_sealed"), opened("verify_token_sealed"))
