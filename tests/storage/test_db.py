"""The database handle's write transactions (core/storage/db.py) when their caller goes away: a transaction
cancelled while it waits for another process's write lock leaves the shared writer usable."""

from __future__ import annotations

import asyncio
from contextlib import closing
from pathlib import Path

import pytest

from core.storage.migrations import apply_migrations
from tests.support.database import open_database, scratch_url, sqlite_connection


async def test_cancel_while_begin_waits_does_not_wedge_the_writer(tmp_path: Path) -> None:
    """Was: a cancellation during BEGIN IMMEDIATE left the shared connection mid-transaction for good."""
    url = scratch_url(tmp_path, "w.db")
    async with open_database(url) as db:
        await apply_migrations(db)
        with closing(sqlite_connection(url, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

            async def write() -> None:
                async with db.transaction() as tx:
                    await tx.execute("CREATE TABLE t1 (x INTEGER)")

            task = asyncio.create_task(write())
            await asyncio.sleep(0.2)  # now waiting in busy_timeout
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            other.execute("COMMIT")
        async with db.transaction() as tx:  # the writer works again
            await tx.execute("CREATE TABLE t2 (x INTEGER)")
        assert await db.fetch_one("SELECT COUNT(*) AS n FROM t2") is not None
