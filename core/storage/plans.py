"""Plans: token allowance per month, allowed models, overage band, per-minute message limit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from core.clock import Clock
from core.errors import Conflict, NotFound
from core.ids import new_id
from core.models import Plan, PlanSettings
from core.storage.db import Database, Row
from core.storage.doorbell import SETTINGS
from core.storage.recent import Recent
from core.storage.records import from_row
from core.storage.updates import set_clause

_COLUMNS = (
    "id, name, monthly_token_limit, models, default_model, overage_percent, messages_per_minute, created_at, updated_at"
)
UPDATABLE = ("name", "monthly_token_limit", "models", "default_model", "overage_percent", "messages_per_minute")


def _plan(row: Row) -> Plan:
    return from_row(Plan, row, models=json.loads(row["models"]))


def _encode(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(list(v)) if k == "models" else v for k, v in fields.items()}


class PlanStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._recent: Recent[str, Plan] = Recent(db.doorbell, SETTINGS)

    async def create(self, settings: PlanSettings) -> Plan:
        now = self._clock.now_ms()
        values = _encode(settings.model_dump())
        async with self._db.transaction() as tx:
            if await tx.fetch_one("SELECT 1 FROM plans WHERE name = ?", (values["name"],)):
                raise Conflict(f"a plan named {values['name']!r} already exists")
            row = await tx.fetch_one(
                f"INSERT INTO plans ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
                (
                    new_id("pln"),
                    values["name"],
                    values["monthly_token_limit"],
                    values["models"],
                    values["default_model"],
                    values.get("overage_percent", 0),
                    values.get("messages_per_minute"),
                    now,
                    now,
                ),
            )
        assert row is not None
        # Every process loads the tokenizers its models need before a turn does (core/tokenizer_warmup.py); the ring
        # also makes them read again the bots, accounts and plans their turns keep (core/storage/recent.py).
        await self._db.doorbell.ring(SETTINGS)
        return _plan(row)

    async def get(self, plan_id: str) -> Plan:
        row = await self._db.fetch_one(f"SELECT {_COLUMNS} FROM plans WHERE id = ?", (plan_id,))
        if row is None:
            raise NotFound("plan")
        return _plan(row)

    async def current(self, plan_id: str) -> Plan:
        """`get` for a turn: kept for a few seconds, read again after any change (core/storage/recent.py)."""
        return await self._recent.get(plan_id, self.get)

    async def list(self) -> list[Plan]:
        return [_plan(r) for r in await self._db.fetch_all(f"SELECT {_COLUMNS} FROM plans ORDER BY created_at, id")]

    async def update(self, plan_id: str, fields: Mapping[str, Any]) -> Plan:
        values = _encode(fields)
        async with self._db.transaction() as tx:
            if "name" in values and await tx.fetch_one(
                "SELECT 1 FROM plans WHERE name = ? AND id <> ?", (values["name"], plan_id)
            ):
                raise Conflict(f"a plan named {values['name']!r} already exists")
            clause, params = set_clause(values, UPDATABLE, updated_at=self._clock.now_ms())
            row = await tx.fetch_one(f"UPDATE plans SET {clause} WHERE id = ? RETURNING {_COLUMNS}", (*params, plan_id))
        if row is None:
            raise NotFound("plan")
        await self._db.doorbell.ring(SETTINGS)  # every process's turns read the plan again, and load its tokenizers
        return _plan(row)

    async def delete(self, plan_id: str) -> None:
        async with self._db.transaction() as tx:
            if await tx.fetch_one("SELECT 1 FROM accounts WHERE plan_id = ?", (plan_id,)):
                raise Conflict("accounts are still on this plan; move them to another plan first")
            if not await tx.execute("DELETE FROM plans WHERE id = ?", (plan_id,)):
                raise NotFound("plan")
