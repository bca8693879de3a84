"""Durable writes made on the event loop's thread (SQLite): committed there, answered only once a sync of the WAL
begun after their commit has ended, one sync shared by the commits that wait together; a failed sync fails them
and sends later durable writes through the writer thread; and the loop's commits keep the WAL bounded."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.errors import StorageUnavailable
from core.storage import wal_sync
from core.storage.db import Database, Transaction
from core.storage.sqlite_db import CHECKPOINT_EVERY
from tests.support.database import open_database, scratch_url

pytestmark = pytest.mark.sqlite_only


class Disk:
    """Stands in for fdatasync: counts the syncs, can hold them back, and can fail."""

    def __init__(self, real: Callable[[int], None]) -> None:
        self._real = real
        self.syncs = 0
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.error: OSError | None = None

    def __call__(self, fd: int) -> None:
        self.started.set()
        self.release.wait(10)
        self.syncs += 1
        if self.error is not None:
            raise self.error
        self._real(fd)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    fake = Disk(wal_sync._sync)
    monkeypatch.setattr(wal_sync, "_sync", fake)
    yield fake
    fake.release.set()


def insert(value: int, threads: list[str] | None = None) -> Callable[[Transaction], object]:
    async def work(tx: Transaction) -> int:
        if threads is not None:
            threads.append(threading.current_thread().name)
        return await tx.execute("INSERT INTO t (x) VALUES (?)", (value,))

    return work


async def create(db: Database) -> None:
    await db.run(lambda tx: tx.execute("CREATE TABLE t (x INTEGER NOT NULL, pad BLOB)"))


async def values(db: Database) -> list[int]:
    return [row["x"] for row in await db.fetch_all("SELECT x FROM t ORDER BY x")]


async def test_a_durable_write_is_answered_only_after_the_wal_is_synced(tmp_path: Path, disk: Disk) -> None:
    async with open_database(scratch_url(tmp_path, "s.db")) as db:
        await create(db)
        disk.release.clear()
        disk.started.clear()
        threads: list[str] = []
        write = asyncio.create_task(db.run(insert(1, threads)))  # type: ignore[arg-type]
        await asyncio.to_thread(disk.started.wait, 5)
        await asyncio.sleep(0.05)
        assert not write.done()  # committed (on the loop's thread) but not on the disk yet: not answered
        assert threads == [threading.current_thread().name]
        disk.release.set()
        assert await asyncio.wait_for(write, 5) == 1
        assert await values(db) == [1]


async def test_commits_made_during_a_sync_share_the_next_one(tmp_path: Path, disk: Disk) -> None:
    async with open_database(scratch_url(tmp_path, "g.db")) as db:
        await create(db)
        disk.release.clear()
        disk.started.clear()
        before = disk.syncs
        first = asyncio.create_task(db.run(insert(0)))  # type: ignore[arg-type]
        await asyncio.to_thread(disk.started.wait, 5)
        rest = [asyncio.create_task(db.run(insert(i))) for i in range(1, 6)]  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in (first, *rest))
        disk.release.set()
        assert await asyncio.wait_for(asyncio.gather(first, *rest), 5) == [1] * 6
        assert disk.syncs - before == 2  # the first one's, then one for the five made while it ran
        assert await values(db) == [0, 1, 2, 3, 4, 5]


async def test_a_failed_sync_fails_its_writes_and_later_ones_take_the_writer_thread(tmp_path: Path, disk: Disk) -> None:
    async with open_database(scratch_url(tmp_path, "f.db")) as db:
        await create(db)
        disk.error = OSError(errno.EIO, "Input/output error")
        with pytest.raises(StorageUnavailable, match="could not be synced"):
            await db.run(insert(1))  # type: ignore[arg-type]
        assert db.writes.failing  # readiness probes with a write of its own
        disk.error = None
        threads: list[str] = []
        assert await db.run(insert(2, threads)) == 1  # type: ignore[arg-type]
        assert threads == ["sqlite-writer"]  # its own synced commit, not the sync that failed
        assert not db.writes.failing
        threads.clear()
        assert await db.run(insert(3, threads), durable=False) == 1  # type: ignore[arg-type]
        assert threads == [threading.current_thread().name]  # writes that need no sync stay on the loop
        assert await values(db) == [1, 2, 3]  # the failed one's commit is there, but was never promised


async def test_a_cancelled_writer_keeps_its_commit_and_close_waits_for_the_sync(tmp_path: Path, disk: Disk) -> None:
    url = scratch_url(tmp_path, "c.db")
    async with open_database(url) as db:
        await create(db)
        disk.release.clear()
        disk.started.clear()
        cancelled = asyncio.create_task(db.run(insert(1)))  # type: ignore[arg-type]
        waiting = asyncio.create_task(db.run(insert(2)))  # type: ignore[arg-type]
        await asyncio.to_thread(disk.started.wait, 5)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        threading.Timer(0.1, disk.release.set).start()
    assert waiting.done() and waiting.result() == 1  # closing answered it first
    async with open_database(url) as db:
        assert await values(db) == [1, 2]


async def test_the_loops_commits_keep_the_wal_bounded(tmp_path: Path) -> None:
    url = scratch_url(tmp_path, "w.db")
    pad = bytes(8000)  # two pages and more per commit
    async with open_database(url) as db:
        await create(db)
        for i in range(CHECKPOINT_EVERY * 8):
            await db.run(lambda tx, i=i: tx.execute("INSERT INTO t (x, pad) VALUES (?, ?)", (i, pad)))
        wal = Path(url.removeprefix("sqlite:///") + "-wal")
        # Without checkpoints the WAL would hold every commit: 800 times 8 KB and more.
        assert (await asyncio.to_thread(wal.stat)).st_size < CHECKPOINT_EVERY * 3 * 4096 * 3
        assert len(await values(db)) == CHECKPOINT_EVERY * 8
