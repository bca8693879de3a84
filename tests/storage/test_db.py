"""The database handle (core/storage/db.py) when things go wrong: a transaction cancelled while it waits for
another process's write lock leaves the shared writer usable, and an open that fails leaves no thread behind."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from core.errors import StorageUnavailable
from core.storage import sqlite_db as db_module
from core.storage.migrations import apply_migrations
from tests.support.database import open_database, scratch_url, sqlite_connection

pytestmark = pytest.mark.sqlite_only


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


async def test_a_failed_open_leaves_no_database_thread_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: when opening the reader connection failed or was cancelled (Ctrl-C during start-up), aiosqlite's thread
    kept waiting for work, and being a non-daemon thread it kept the process from exiting."""
    configure = db_module._configure

    def refuse_on_the_reader(raw: sqlite3.Connection) -> None:
        if "_connection_worker_thread" in threading.current_thread().name:
            raise sqlite3.OperationalError("disk I/O error")
        configure(raw)

    monkeypatch.setattr(db_module, "_configure", refuse_on_the_reader)
    with pytest.raises(StorageUnavailable, match="disk I/O error"):
        async with open_database(scratch_url(tmp_path, "r.db")):
            pass
    for _ in range(100):
        left = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
        if not left:
            break
        await asyncio.sleep(0.02)
    assert left == []
