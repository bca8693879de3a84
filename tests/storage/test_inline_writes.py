"""Small write transactions that are not urgent (`Database.run(small=True)`: a turn's reservation, its charge, its
inbox event) are made on the event loop's thread while nothing else writes, and take the hop to the writer thread
otherwise: the same outcome either way, only cheaper. (How a durable one made there waits for the disk:
test_wal_sync.py.)"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from core.storage.db import Database, Transaction
from tests.support.database import open_database, scratch_url, sqlite_connection

pytestmark = pytest.mark.sqlite_only


class Recorder:
    """A transaction that inserts `value` and notes the thread it ran on."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def insert(self, value: int) -> Callable[[Transaction], Coroutine[Any, Any, int]]:
        async def work(tx: Transaction) -> int:
            self.threads.append(threading.current_thread().name)
            return await tx.execute("INSERT INTO t (x) VALUES (?)", (value,))

        return work


async def values(db: Database) -> list[int]:
    return [row["x"] for row in await db.fetch_all("SELECT x FROM t ORDER BY x")]


async def create(db: Database) -> None:
    await db.run(lambda tx: tx.execute("CREATE TABLE t (x INTEGER NOT NULL)"))


async def test_with_nothing_else_writing_it_is_made_on_the_loops_thread(tmp_path: Path) -> None:
    url = scratch_url(tmp_path, "i.db")
    async with open_database(url) as db:
        await create(db)
        recorder = Recorder()
        assert await db.run(recorder.insert(1), durable=False, small=True) == 1
        assert await db.run(recorder.insert(2), small=True) == 1  # durable, the same
        assert await db.run(recorder.insert(3), urgent=True) == 1  # the urgent lane always takes the writer thread
        assert await db.run(recorder.insert(4), durable=False, small=True) == 1  # and the writer is idle again at once
        assert await db.run(recorder.insert(5)) == 1  # not marked small (a purge, say): the writer thread
        loop = threading.current_thread().name
        assert recorder.threads == [loop, loop, "sqlite-writer", loop, "sqlite-writer"]
        with closing(sqlite_connection(url)) as other:  # committed, for every connection
            assert [r[0] for r in other.execute("SELECT x FROM t ORDER BY x")] == [1, 2, 3, 4, 5]
    async with open_database(url) as db:
        assert await values(db) == [1, 2, 3, 4, 5]


async def test_another_processes_lock_is_waited_for_on_the_writer_thread_not_failed(tmp_path: Path) -> None:
    url = scratch_url(tmp_path, "b.db")
    async with open_database(url) as db:
        await create(db)
        recorder = Recorder()
        with closing(sqlite_connection(url, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process is writing
            write = asyncio.create_task(db.run(recorder.insert(1), durable=False, small=True))
            await asyncio.sleep(0.2)
            assert not write.done()  # waiting for the lock (busy_timeout), not refused
            other.execute("COMMIT")
            assert await asyncio.wait_for(write, 5.0) == 1
        assert recorder.threads == ["sqlite-writer"]
        assert await values(db) == [1]


async def test_while_a_multi_step_transaction_is_open_it_waits_for_it(tmp_path: Path) -> None:
    url = scratch_url(tmp_path, "m.db")
    async with open_database(url) as db:
        await create(db)
        recorder = Recorder()
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (x) VALUES (1)")
            write = asyncio.create_task(db.run(recorder.insert(2), durable=False, small=True))
            await asyncio.sleep(0.05)
            assert not write.done()
        assert await asyncio.wait_for(write, 5.0) == 1
        assert recorder.threads == ["sqlite-writer"]
        assert await values(db) == [1, 2]


async def test_one_that_fails_leaves_nothing_and_the_next_one_is_made(tmp_path: Path) -> None:
    url = scratch_url(tmp_path, "f.db")
    async with open_database(url) as db:
        await create(db)

        async def refused(tx: Transaction) -> None:
            await tx.execute("INSERT INTO t (x) VALUES (1)")
            raise ValueError("over the quota")

        async def awaits_something_else(tx: Transaction) -> None:
            await tx.execute("INSERT INTO t (x) VALUES (2)")
            await asyncio.sleep(0)

        with pytest.raises(ValueError, match="over the quota"):
            await db.run(refused, durable=False, small=True)
        with pytest.raises(RuntimeError, match="awaited something other"):
            await db.run(awaits_something_else, durable=False, small=True)
        recorder = Recorder()
        assert await db.run(recorder.insert(3), durable=False, small=True) == 1
        assert recorder.threads == [threading.current_thread().name]
        assert await values(db) == [3]


async def test_after_close_it_is_refused_like_any_write(tmp_path: Path) -> None:
    async with open_database(scratch_url(tmp_path, "c.db")) as db:
        await create(db)
    for durable in (True, False):
        with pytest.raises(ValueError, match="closed"):
            await db.run(Recorder().insert(1), durable=durable, small=True)


async def test_while_the_writer_thread_is_busy_it_waits_for_it_and_is_then_made_on_the_loops_thread(
    tmp_path: Path,
) -> None:
    """Queued behind the thread's work it would keep the thread busy for the next write, and so on: under a steady
    load every write would take the hop (90% of them did in `bench.relay` at concurrency 32)."""
    async with open_database(scratch_url(tmp_path, "q.db")) as db:
        await create(db)
        gate = threading.Event()

        async def held(tx: Transaction) -> int:  # urgent work always runs on the writer thread
            gate.wait(5)
            return await tx.execute("INSERT INTO t (x) VALUES (1)")

        urgent = asyncio.create_task(db.run(held, urgent=True))
        await asyncio.sleep(0.05)
        recorder = Recorder()
        writes = [asyncio.create_task(db.run(recorder.insert(i), durable=i == 2, small=True)) for i in (2, 3)]
        await asyncio.sleep(0.05)
        assert not any(write.done() for write in writes)
        gate.set()
        assert await asyncio.wait_for(asyncio.gather(urgent, *writes), 5) == [1, 1, 1]
        assert recorder.threads == [threading.current_thread().name] * 2
        assert await values(db) == [1, 2, 3]
