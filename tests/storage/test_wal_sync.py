"""Durable writes made on the event loop's thread (SQLite): committed there, answered only once a sync of the WAL
begun after their commit has ended, one sync shared by the commits that wait together; a failed sync fails them
and sends later durable writes through the writer thread; and the loop's commits keep the WAL bounded."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.errors import StorageUnavailable
from core.storage import wal_sync
from core.storage.db import Database, Transaction
from core.storage.sqlite_db import CHECKPOINT_EVERY, WAL_KEPT_BYTES
from tests.support.database import open_database, scratch_url, sqlite_connection

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
        write = asyncio.create_task(db.run(insert(1, threads), small=True))  # type: ignore[arg-type]
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
        first = asyncio.create_task(db.run(insert(0), small=True))  # type: ignore[arg-type]
        await asyncio.to_thread(disk.started.wait, 5)
        rest = [asyncio.create_task(db.run(insert(i), small=True)) for i in range(1, 6)]  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in (first, *rest))
        disk.release.set()
        assert await asyncio.wait_for(asyncio.gather(first, *rest), 5) == [1] * 6
        assert disk.syncs - before == 2  # the first one's, then one for the five made while it ran
        assert await values(db) == [0, 1, 2, 3, 4, 5]


async def test_after_a_failed_sync_every_write_is_refused_until_a_restart(tmp_path: Path, disk: Disk) -> None:
    """Its commit is visible and may not be on the disk, and the next fdatasync may report clean although the pages
    were dropped: the writes stop, readiness says so, and a restart recovers from what is on the disk."""
    url = scratch_url(tmp_path, "f.db")
    async with open_database(url) as db:
        await create(db)
        disk.error = OSError(errno.EIO, "Input/output error")
        with pytest.raises(StorageUnavailable, match="could not be synced"):
            await db.run(insert(1), small=True)  # type: ignore[arg-type]
        assert db.writes.failing  # readiness probes with a write of its own
        disk.error = None
        for durable, small in ((True, True), (False, True), (True, False)):
            with pytest.raises(StorageUnavailable, match="refused until the gateway restarts"):
                await db.run(insert(2), durable=durable, small=small)  # type: ignore[arg-type]
        with pytest.raises(StorageUnavailable, match="refused until the gateway restarts"):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t (x) VALUES (3)")
        assert db.writes.failing
    async with open_database(url) as db:
        assert await db.run(insert(4), small=True) == 1  # type: ignore[arg-type]
        assert await values(db) == [1, 4]  # this time the commit that failed its sync was on the disk


async def test_a_database_reached_through_a_symbolic_link_syncs_the_wal_sqlite_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite names the WAL after the file the link points to."""
    synced: list[str] = []
    real_sync = wal_sync._sync

    def recorded(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_sync(fd)

    monkeypatch.setattr(wal_sync, "_sync", recorded)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "gateway.db"
    link = tmp_path / "link.db"
    link.symlink_to(target)
    async with open_database(f"sqlite:///{link}") as db:
        await create(db)
        assert await db.run(insert(1), small=True) == 1  # type: ignore[arg-type]
        assert await values(db) == [1]
    assert synced == [f"{target}-wal"]
    assert not (tmp_path / "link.db-wal").exists()


async def test_a_cancelled_writer_keeps_its_commit_and_close_waits_for_the_sync(tmp_path: Path, disk: Disk) -> None:
    url = scratch_url(tmp_path, "c.db")
    async with open_database(url) as db:
        await create(db)
        disk.release.clear()
        disk.started.clear()
        cancelled = asyncio.create_task(db.run(insert(1), small=True))  # type: ignore[arg-type]
        waiting = asyncio.create_task(db.run(insert(2), small=True))  # type: ignore[arg-type]
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
            await db.run(lambda tx, i=i: tx.execute("INSERT INTO t (x, pad) VALUES (?, ?)", (i, pad)), small=True)
        wal = Path(url.removeprefix("sqlite:///") + "-wal")
        # Without checkpoints the WAL would hold every commit: 800 times 8 KB and more.
        assert (await asyncio.to_thread(wal.stat)).st_size < CHECKPOINT_EVERY * 3 * 4096 * 3
        assert len(await values(db)) == CHECKPOINT_EVERY * 8


async def test_a_wal_grown_behind_a_long_reader_is_cut_back_when_it_starts_over(tmp_path: Path) -> None:
    """A reader holding its snapshot (a backup during traffic) keeps the WAL from starting over, so it grows; once
    the reader is gone the WAL starts over and its file is cut back to WAL_KEPT_BYTES, not kept at its largest."""
    url = scratch_url(tmp_path, "g.db")
    pad = bytes(16_000)
    wal = Path(url.removeprefix("sqlite:///") + "-wal")
    async with open_database(url) as db:
        await create(db)
        reader = sqlite_connection(url, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM t").fetchall()  # a snapshot held from here
            for i in range(CHECKPOINT_EVERY * 25):  # about 40 MB of pages the WAL cannot start over from
                await db.run(lambda tx, i=i: tx.execute("INSERT INTO t (x, pad) VALUES (?, ?)", (i, pad)), small=True)
            grown = (await asyncio.to_thread(wal.stat)).st_size
            assert grown > WAL_KEPT_BYTES
        finally:
            reader.close()
        for i in range(CHECKPOINT_EVERY * 3):  # checkpoints now copy it all, and the WAL starts over
            await db.run(lambda tx, i=i: tx.execute("INSERT INTO t (x) VALUES (?)", (10**6 + i,)), small=True)
        assert (await asyncio.to_thread(wal.stat)).st_size <= WAL_KEPT_BYTES
        assert len(await values(db)) == CHECKPOINT_EVERY * 28


async def test_the_write_after_a_checkpoint_starts_the_wal_over_on_the_writer_thread(tmp_path: Path) -> None:
    """Starting the WAL over syncs its new header: the writer thread's wait, not the event loop's."""
    async with open_database(scratch_url(tmp_path, "r.db")) as db:
        await create(db)
        threads: list[str] = []
        for i in range(CHECKPOINT_EVERY + 2):
            await db.run(insert(i, threads), small=True)  # type: ignore[arg-type]
        loop = threading.current_thread().name
        # The 100th of the loop's commits queued the checkpoint: the next write waits for it and takes the hop.
        assert threads[CHECKPOINT_EVERY - 2 :] == [loop, loop, "sqlite-writer", loop]


async def test_after_a_checkpoint_one_write_takes_the_hop_and_the_others_wait_for_it(tmp_path: Path) -> None:
    """Had every write waiting for the checkpoint taken the hop, each would keep the writer thread busy for the next
    (at concurrency 32 in `bench.relay`, a tenth of all writes did)."""
    async with open_database(scratch_url(tmp_path, "o.db")) as db:
        await create(db)
        threads: list[str] = []
        for i in range(CHECKPOINT_EVERY):  # the last of them queues the checkpoint
            await db.run(insert(i, threads), small=True)  # type: ignore[arg-type]
        threads.clear()
        writes = (db.run(insert(1000 + i, threads), small=True) for i in range(10))  # type: ignore[arg-type]
        assert await asyncio.gather(*writes) == [1] * 10
        assert sorted(threads) == sorted(["sqlite-writer"] + [threading.current_thread().name] * 9)
