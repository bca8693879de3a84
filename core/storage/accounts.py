"""Accounts (the businesses): plan, lock state; each gets its quota row when created."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.clock import Clock, month_bounds
from core.errors import NotFound
from core.ids import new_id
from core.models import Account
from core.storage.db import Database, Row
from core.storage.doorbell import SETTINGS
from core.storage.recent import Recent
from core.storage.records import from_row
from core.storage.updates import set_clause

_COLUMNS = "id, name, email, plan_id, locked, created_at, updated_at"
UPDATABLE = ("name", "email", "plan_id")


def _account(row: Row) -> Account:
    return from_row(Account, row, locked=bool(row["locked"]))


class AccountStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._recent: Recent[str, Account] = Recent(db.doorbell, SETTINGS)

    async def create(self, name: str, plan_id: str, email: str | None) -> Account:
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            if not await tx.fetch_one("SELECT 1 FROM plans WHERE id = ?", (plan_id,)):
                raise NotFound("plan")
            row = await tx.fetch_one(
                f"INSERT INTO accounts ({_COLUMNS}) VALUES (?, ?, ?, ?, 0, ?, ?) RETURNING {_COLUMNS}",
                (new_id("acc"), name, email, plan_id, now, now),
            )
            assert row is not None
            await tx.execute(
                "INSERT INTO quota_state (account_id, period_start, updated_at) VALUES (?, ?, ?)",
                (row["id"], month_bounds(now)[0], now),
            )
        return _account(row)

    async def get(self, account_id: str) -> Account:
        row = await self._db.fetch_one(f"SELECT {_COLUMNS} FROM accounts WHERE id = ?", (account_id,))
        if row is None:
            raise NotFound("account")
        return _account(row)

    async def current(self, account_id: str) -> Account:
        """`get` for a turn: kept for a few seconds, read again after any change (core/storage/recent.py). A lock
        is never missed for that: the quota's reservation reads it in its own transaction."""
        return await self._recent.get(account_id, self.get)

    async def list(self, *, only: str | None = None) -> list[Account]:
        if only is not None:
            rows = await self._db.fetch_all(f"SELECT {_COLUMNS} FROM accounts WHERE id = ?", (only,))
        else:
            rows = await self._db.fetch_all(f"SELECT {_COLUMNS} FROM accounts ORDER BY created_at, id")
        return [_account(r) for r in rows]

    async def update(self, account_id: str, fields: Mapping[str, Any]) -> Account:
        async with self._db.transaction() as tx:
            if "plan_id" in fields and not await tx.fetch_one("SELECT 1 FROM plans WHERE id = ?", (fields["plan_id"],)):
                raise NotFound("plan")
            clause, params = set_clause(fields, UPDATABLE, updated_at=self._clock.now_ms())
            row = await tx.fetch_one(
                f"UPDATE accounts SET {clause} WHERE id = ? RETURNING {_COLUMNS}", (*params, account_id)
            )
        if row is None:
            raise NotFound("account")
        await self._db.doorbell.ring(SETTINGS)  # a new plan, say: every process's turns read the account again
        return _account(row)

    async def set_locked(self, account_id: str, locked: bool) -> Account:
        row = None
        async with self._db.transaction() as tx:
            row = await tx.fetch_one(
                f"UPDATE accounts SET locked = ?, updated_at = ? WHERE id = ? RETURNING {_COLUMNS}",
                (1 if locked else 0, self._clock.now_ms(), account_id),
            )
        if row is None:
            raise NotFound("account")
        await self._db.doorbell.ring(SETTINGS)
        return _account(row)
