"""Deferred writes (`Transaction.defer`), prefetched statements (`Transaction.prefetch`) and one-statement changes
(`Database.execute_returning`), on both backends.

On PostgreSQL a deferred write waits for the transaction's next statement or its commit and travels with it, one
round trip for both; on SQLite it runs at once. Either way a transaction is all or nothing: a deferred write that
fails fails its transaction where it is sent, and one that was never sent (the transaction raised first) leaves
nothing behind. Statements are prepared on the server once they repeat (psycopg), so the same statement with values
of other sizes and with NULL must keep working."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import Conflict
from core.storage.db import Database, Transaction
from core.storage.migrations import apply_migrations
from tests.support.database import open_database, scratch_url

INSERT = "INSERT INTO rate_limits (key, tat_us) VALUES (?, ?)"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(scratch_url(tmp_path, "d.db")) as database:
        await apply_migrations(database)
        yield database


async def stored(db: Database) -> list[tuple[str, int]]:
    rows = await db.fetch_all("SELECT key, tat_us FROM rate_limits ORDER BY key")
    return [(r["key"], int(r["tat_us"])) for r in rows]


async def test_deferred_writes_commit_with_the_transaction_and_are_seen_by_its_next_statement(db: Database) -> None:
    async def work(tx: Transaction) -> int:
        await tx.defer(INSERT, ("a", 1))
        await tx.defer(INSERT, ("b", 2))
        row = await tx.fetch_one("SELECT COUNT(*) AS n FROM rate_limits")  # travels with both
        await tx.defer(INSERT, ("c", 3))  # travels with the commit
        assert row is not None
        return int(row["n"])

    assert await db.run(work) == 2
    assert await stored(db) == [("a", 1), ("b", 2), ("c", 3)]

    async with db.transaction() as tx:  # the multi-step transaction: the same
        await tx.execute(INSERT, ("d", 4))
        await tx.defer("UPDATE rate_limits SET tat_us = tat_us + 10 WHERE key = ?", ("d",))
    assert (await stored(db))[-1] == ("d", 14)


async def test_a_deferred_write_that_fails_rolls_the_whole_transaction_back(db: Database) -> None:
    await db.execute(INSERT, ("taken", 1))

    async def fails_with_next_statement(tx: Transaction) -> None:
        await tx.execute(INSERT, ("first", 1))
        await tx.defer(INSERT, ("taken", 2))  # a unique violation, found when it is sent
        await tx.execute(INSERT, ("after", 3))

    async def fails_at_commit(tx: Transaction) -> None:
        await tx.execute(INSERT, ("first", 1))
        await tx.defer(INSERT, ("taken", 2))

    for work in (fails_with_next_statement, fails_at_commit):
        with pytest.raises(Conflict):
            await db.run(work)
        assert await stored(db) == [("taken", 1)]  # nothing of it stayed, its first write included

    with pytest.raises(Conflict):
        async with db.transaction() as tx:
            await tx.execute(INSERT, ("first", 1))
            await tx.defer(INSERT, ("taken", 2))
    assert await stored(db) == [("taken", 1)]
    await db.execute(INSERT, ("later", 5))  # the connection came back clean: the next transaction works
    assert await stored(db) == [("later", 5), ("taken", 1)]


async def test_a_transaction_that_raises_before_its_deferred_writes_are_sent_stores_nothing(db: Database) -> None:
    async def raises(tx: Transaction) -> None:
        await tx.defer(INSERT, ("never", 1))
        raise RuntimeError("the turn failed")

    with pytest.raises(RuntimeError):
        await db.run(raises)
    assert await stored(db) == []
    await db.execute(INSERT, ("next", 2))
    assert await stored(db) == [("next", 2)]


BUMP = "UPDATE rate_limits SET tat_us = tat_us + 1 WHERE key = ? RETURNING tat_us"


async def test_prefetched_statements_run_in_order_and_hand_back_their_rows_once_sent(db: Database) -> None:
    await db.execute(INSERT, ("a", 1))

    async def work(tx: Transaction) -> tuple[list[int], int, int, list[int]]:
        bumped = await tx.prefetch(BUMP, ("a",))
        counted = await tx.prefetch("SELECT COUNT(*) AS n FROM rate_limits")
        await tx.defer(INSERT, ("b", 2))
        seen = await tx.fetch_one("SELECT tat_us FROM rate_limits WHERE key = ?", ("a",))  # they all travel with it
        assert seen is not None
        assert [r["tat_us"] for r in await bumped.rows()] == [r["tat_us"] for r in await bumped.rows()]  # twice
        last = await tx.prefetch(BUMP, ("b",))  # nothing takes it: its rows() sends it
        return (
            [r["tat_us"] for r in await bumped.rows()],
            int((await counted.rows())[0]["n"]),  # before the deferred insert: statements keep their order
            int(seen["tat_us"]),
            [r["tat_us"] for r in await last.rows()],
        )

    assert await db.run(work) == ([2], 1, 2, [3])
    assert await stored(db) == [("a", 2), ("b", 3)]

    async with db.transaction() as tx:  # one never read is committed with the rest; its rows stay readable
        unread = await tx.prefetch(BUMP, ("a",))
        read_later = await tx.prefetch(BUMP, ("b",))
    assert [r["tat_us"] for r in await read_later.rows()] == [4]
    assert await stored(db) == [("a", 3), ("b", 4)]
    assert [r["tat_us"] for r in await unread.rows()] == [3]


async def test_a_prefetched_statement_that_fails_fails_its_transaction(db: Database) -> None:
    await db.execute(INSERT, ("taken", 1))

    async def fails(tx: Transaction) -> None:
        await tx.execute(INSERT, ("first", 1))
        clash = await tx.prefetch(INSERT + " RETURNING key", ("taken", 2))  # found when it is sent
        await tx.execute(INSERT, ("after", 3))
        await clash.rows()

    with pytest.raises(Conflict):
        await db.run(fails)
    assert await stored(db) == [("taken", 1)]
    await db.execute(INSERT, ("next", 2))
    assert await stored(db) == [("next", 2), ("taken", 1)]


async def test_execute_returning_commits_one_change_and_hands_back_its_rows(db: Database) -> None:
    await db.execute(INSERT, ("a", 1))
    await db.execute(INSERT, ("b", 2))
    rows = await db.execute_returning(
        "UPDATE rate_limits SET tat_us = tat_us * 10 WHERE tat_us >= ? RETURNING key, tat_us", (2,)
    )
    assert [(r["key"], int(r["tat_us"])) for r in rows] == [("b", 20)]
    assert await stored(db) == [("a", 1), ("b", 20)]
    assert await db.execute_returning("DELETE FROM rate_limits WHERE key = ? RETURNING key", ("none",)) == []
    with pytest.raises(Conflict):
        await db.execute_returning(INSERT + " RETURNING key", ("a", 3))


async def test_a_repeated_statement_keeps_working_with_values_of_any_size_and_null(db: Database) -> None:
    """Past psycopg's prepare threshold the statement is prepared with its first values' types: an int of another
    size (smallint, bigint) or a NULL in the same place must still bind."""
    await db.execute(INSERT, ("k", 0))
    for value in (1, 2, 3, 4, 5, 6, 40_000, 3_000_000_000, 2**62, 7):
        await db.execute("UPDATE rate_limits SET tat_us = ? WHERE key = ?", (value, "k"))
        assert await stored(db) == [("k", value)]
    for key in ("k", None, "k", None, "k", None, "k"):
        row = await db.fetch_one("SELECT COUNT(*) AS n FROM rate_limits WHERE key = COALESCE(?, 'nothing')", (key,))
        assert row is not None and int(row["n"]) == (1 if key else 0)


async def test_a_transaction_that_need_not_be_durable_skips_the_sync_only_on_sqlite(tmp_path: Path) -> None:
    """`run(durable=False)` (a quota reservation): on SQLite its commit is not synced, since only a power cut or a
    kernel crash can lose it and that stops the gateway too; a PostgreSQL server may lose an unsynced commit and go
    on serving, so there it waits for the WAL flush like any. The writes are kept like any, and every other
    transaction, on the same connection after it included, waits for the disk as before."""
    # The tests' PostgreSQL connections do not wait for the disk (tests/support/database.py): this one does, as a
    # production server's.
    url = scratch_url(tmp_path, "durable.db").replace("synchronous_commit%3Doff", "synchronous_commit%3Don")
    postgresql = not url.startswith("sqlite")
    setting = (
        "SELECT current_setting('synchronous_commit') AS s"
        if postgresql
        else "SELECT synchronous AS s FROM pragma_synchronous"
    )

    async def write(tx: Transaction, key: str) -> str:
        await tx.execute(INSERT, (key, 1))
        row = await tx.fetch_one(setting)
        assert row is not None
        return str(row["s"])

    async with open_database(url) as db:
        await apply_migrations(db)
        light = await db.run(lambda tx: write(tx, "light"), durable=False)
        durable = await db.run(lambda tx: write(tx, "durable"))
        expected = ("on", "on") if postgresql else ("1", "2")  # SQLite: NORMAL, FULL
        assert (light, durable) == expected
        assert await stored(db) == [("durable", 1), ("light", 1)]
