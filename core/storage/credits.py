"""The append-only credit ledger; every operator entry moves the account's credit balance in the same commit."""

from __future__ import annotations

from core.clock import Clock
from core.errors import NotFound
from core.ids import new_id
from core.models import CreditEntry
from core.storage.db import Database, Row, Transaction
from core.storage.records import from_row

_COLUMNS = "id, account_id, kind, tokens, note, created_by, created_at"


def _entry(row: Row) -> CreditEntry:
    return from_row(CreditEntry, row)


async def append_entry(
    tx: Transaction, account_id: str, kind: str, tokens: int, note: str | None, created_by: str | None, now: int
) -> CreditEntry:
    """Append one entry; `seq` keeps entries in the order they were written, even within one millisecond.

    The caller holds the account's quota_state row locked (it changed the balance, or settled a charge, in this
    transaction): that is what keeps two appends of one account from reading the same MAX(seq)."""
    row = await tx.fetch_one(
        f"INSERT INTO credit_ledger ({_COLUMNS}, seq)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, COALESCE(MAX(seq), 0) + 1 FROM credit_ledger WHERE account_id = ?"
        f" RETURNING {_COLUMNS}",
        (new_id("cr"), account_id, kind, tokens, note, created_by, now, account_id),
    )
    assert row is not None
    return _entry(row)


class CreditLedger:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add(self, account_id: str, kind: str, tokens: int, note: str | None, created_by: str) -> CreditEntry:
        now = self._clock.now_ms()
        async with self._db.transaction() as tx:
            moved = await tx.execute(
                "UPDATE quota_state SET credit_balance = credit_balance + ?, updated_at = ? WHERE account_id = ?",
                (tokens, now, account_id),
            )
            if not moved:
                raise NotFound("account")
            return await append_entry(tx, account_id, kind, tokens, note, created_by, now)

    async def list(self, account_id: str) -> list[CreditEntry]:
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM credit_ledger WHERE account_id = ? ORDER BY seq", (account_id,)
        )
        return [_entry(r) for r in rows]

    async def balance(self, account_id: str) -> int:
        row = await self._db.fetch_one("SELECT credit_balance FROM quota_state WHERE account_id = ?", (account_id,))
        if row is None:
            raise NotFound("account")
        return int(row["credit_balance"])
