"""PostgreSQL prepares the statements a connection repeats. A migration by another process (a rolling deploy: the new
release migrates while the old processes still serve) can change what a prepared `SELECT a.*` returns; the server
then refuses the prepared statement ("cached plan must not change result type"). The handle forgets its prepared
statements and runs the statement again, so the request is answered instead of failing until the connection is
recycled."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.storage.db import Transaction
from core.storage.migrations import apply_migrations
from tests.support.database import execute, open_database, scratch_url

pytestmark = pytest.mark.postgresql_only

SELECT_ALL = "SELECT a.* FROM accounts a WHERE a.id = ?"


async def test_a_table_changed_by_another_process_does_not_break_a_prepared_select(tmp_path: Path) -> None:
    url = scratch_url(tmp_path, "p.db")
    async with open_database(url) as db:
        await apply_migrations(db)
        await db.execute(
            "INSERT INTO plans (id, name, monthly_token_limit, models, default_model, overage_percent,"
            " messages_per_minute, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("pln_1", "starter", 1000, "[]", "gpt-4o-mini", 0, 60, 1, 1),
        )
        await db.execute(
            "INSERT INTO accounts (id, name, plan_id, locked, created_at, updated_at) VALUES (?, ?, ?, 0, 1, 1)",
            ("acc_1", "Bakery", "pln_1"),
        )

        async def read(tx: Transaction) -> set[str]:
            row = await tx.fetch_one(SELECT_ALL, ("acc_1",))
            assert row is not None
            return set(row)

        for _ in range(40):  # past the prepare threshold on every pooled connection
            assert "extra_note" not in (await db.fetch_one(SELECT_ALL, ("acc_1",)) or {})
            assert "extra_note" not in await db.run(read)

        execute(url, "ALTER TABLE accounts ADD COLUMN extra_note TEXT")  # another process's migration

        for _ in range(10):  # every connection: reads outside a transaction and inside one
            row = await db.fetch_one(SELECT_ALL, ("acc_1",))
            assert row is not None and row["name"] == "Bakery" and "extra_note" in row
            assert "extra_note" in await db.run(read)
