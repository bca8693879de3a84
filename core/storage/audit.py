"""The audit trail: every mutation made through the admin and dashboard APIs, who made it, and how it ended.

An entry never holds a request body: `detail` names the body fields sent, not their values, so access tokens,
app secrets and keys can never land here. A successful mutation also appears in the touched account's activity
feed (kind `admin_action`), written in the same transaction as the audit row; the feed, read by the account's
owners and viewers, never names the operator (an admin's token subject stays in the admin-only audit trail).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from core.clock import Clock
from core.fields import EpochMs
from core.ids import new_id
from core.models import Record
from core.storage.activity import NewActivity, add_activity
from core.storage.db import Database, Row
from core.storage.keyset import newest_first
from core.storage.records import from_row

_COLUMNS = (
    "id, actor, actor_role, account_id, action, method, path, target_type, target_id, status, request_id, detail,"
    " created_at"
)
# The owning account of a path parameter's object, looked up before the mutation runs (an erased contact is gone
# afterwards). Table names come from this mapping only.
_OWNER_TABLES = {"bot_id": "bots", "channel_id": "channels", "contact_id": "contacts"}


class AuditEntry(Record):
    id: str
    actor: str = Field(description="the token's subject")
    actor_role: Literal["admin", "owner", "viewer"]
    account_id: str | None = Field(description="the account touched; null for platform-wide changes")
    action: str = Field(description="the operation, e.g. update_bot")
    method: str
    path: str = Field(description="the route pattern, e.g. /api/admin/bots/{bot_id}")
    target_type: str | None
    target_id: str | None
    status: int = Field(description="the answer's status code")
    request_id: str | None
    detail: dict[str, Any] | None = Field(description="the names (never the values) of the body fields sent")
    created_at: EpochMs


@dataclass(frozen=True, slots=True)
class NewAuditEntry:
    actor: str
    actor_role: str
    account_id: str | None
    action: str
    method: str
    path: str
    target_type: str | None
    target_id: str | None
    status: int
    request_id: str | None
    detail: Mapping[str, Any] | None


def _entry(row: Row) -> AuditEntry:
    return from_row(AuditEntry, row, detail=None if row["detail"] is None else json.loads(row["detail"]))


class AuditStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def owner_of(self, param: str, value: str) -> str | None:
        """The account owning the object a path parameter names (`bot_id`, ...), if it exists."""
        if param == "account_id":
            return value
        table = _OWNER_TABLES.get(param)
        if table is None:
            return None
        row = await self._db.fetch_one(f"SELECT account_id FROM {table} WHERE id = ?", (value,))
        return None if row is None else row["account_id"]

    async def record(self, entry: NewAuditEntry) -> None:
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id("aud"),
                    entry.actor,
                    entry.actor_role,
                    entry.account_id,
                    entry.action,
                    entry.method,
                    entry.path,
                    entry.target_type,
                    entry.target_id,
                    entry.status,
                    entry.request_id,
                    None if entry.detail is None else json.dumps(dict(entry.detail), separators=(",", ":")),
                    now,
                ),
            )
            # The feed shows what happened to the account; refused attempts stay in the audit trail only.
            if entry.account_id is not None and 200 <= entry.status < 300:
                await add_activity(tx, _admin_action(entry), now)

    async def page(self, account_id: str | None, *, after: tuple[int, str] | None, limit: int) -> list[AuditEntry]:
        """Up to `limit` entries, newest first, older than the `(created_at, id)` key `after`."""
        rows = await newest_first(self._db, "audit_log", _COLUMNS, {"account_id": account_id}, after=after, limit=limit)
        return [_entry(r) for r in rows]


def _admin_action(entry: NewAuditEntry) -> NewActivity:
    who = "The operator" if entry.actor_role == "admin" else f"{entry.actor_role.capitalize()} {entry.actor}"
    what = entry.action.replace("_", " ")
    if entry.target_type and entry.target_id:
        # "update bot bot_1", not "update bot bot bot_1"; "lock account (account acc_1)" where the verb hides it.
        named = what.endswith(" " + entry.target_type.replace("_", " "))
        what += f" {entry.target_id}" if named else f" ({entry.target_type} {entry.target_id})"
    detail: dict[str, Any] = {"actor_role": entry.actor_role, "method": entry.method, "path": entry.path}
    if entry.actor_role != "admin":
        # An owner's or viewer's subject is their own account's business; the operator's identity (the admin
        # JWT's sub) is not: owners and viewers read this feed, and only the admin-only audit log names the admin.
        detail["actor"] = entry.actor
    detail["status"] = entry.status
    return NewActivity(
        entry.account_id or "",
        "admin_action",
        f"{who}: {what}",
        bot_id=entry.target_id if entry.target_type == "bot" else None,
        channel_id=entry.target_id if entry.target_type == "channel" else None,
        detail=detail,
    )
