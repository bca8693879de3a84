"""Usage records: one row per LLM turn attempted, successful or not, with tokens, cost and outcome."""

from __future__ import annotations

from dataclasses import fields
from operator import attrgetter

from core.models import UsageRecord
from core.storage.db import Database, Row, Transaction

_FIELDS = tuple(f.name for f in fields(UsageRecord))
_COLUMNS = ", ".join(_FIELDS)
# The record's values in column order; dataclasses.astuple deep-copies every field, 20 times slower for 22 fields.
_VALUES = attrgetter(*_FIELDS)
_INSERT = f"INSERT INTO usage_records ({_COLUMNS}, total_tokens) VALUES ({', '.join('?' * (len(_FIELDS) + 1))})"


def _record(row: Row) -> UsageRecord:
    return UsageRecord(**{name: row[name] for name in _FIELDS})


class UsageStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, record: UsageRecord, *, tx: Transaction | None = None) -> None:
        params = (*_VALUES(record), record.total_tokens)
        if tx is not None:
            await tx.defer(_INSERT, params)  # with the caller's commit
        else:
            await self._db.execute(_INSERT, params)

    async def for_account(self, account_id: str, *, limit: int = 100) -> list[UsageRecord]:
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM usage_records WHERE account_id = ? ORDER BY created_at DESC, id LIMIT ?",
            (account_id, limit),
        )
        return [_record(r) for r in rows]
