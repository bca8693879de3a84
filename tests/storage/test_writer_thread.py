"""The writer thread: whole transactions queued together share one commit, a failing one is undone alone, urgent
work goes first, raw steps of a multi-hop transaction are never batched, and a locked database fails a batch
whole instead of half-committing it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path

import pytest

from core.storage.db import Transaction
from core.storage.writer_thread import WriterThread
from tests.support.database import open_database, scratch_url, sqlite_connection

pytestmark = pytest.mark.sqlite_only


def connector(path: Path, *, busy_ms: int = 5000) -> Callable[[], sqlite3.Connection]:
    def connect() -> sqlite3.Connection:
        raw = sqlite_connection(path, isolation_level=None, check_same_thread=False)
        raw.execute("PRAGMA journal_mode=WAL").fetchall()
        raw.execute(f"PRAGMA busy_timeout={busy_ms}").fetchall()
        return raw

    return connect


def rows(path: Path) -> list[str]:
    with closing(sqlite_connection(path)) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM t ORDER BY rowid")]


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[WriterThread]:
    path = tmp_path / "w.db"
    sqlite_connection(path).execute("CREATE TABLE t (name TEXT UNIQUE)").connection.close()
    thread = await WriterThread.open(connector(path))
    try:
        yield thread
    finally:
        await thread.close()


def blocked(writer: WriterThread) -> tuple[threading.Event, asyncio.Future[None]]:
    """Hold the writer thread on a raw step until the event is set, so what is queued meanwhile waits together."""
    gate = threading.Event()
    return gate, writer.submit(lambda _: gate.wait(5) and None)


def insert(name: str, log: list[str] | None = None) -> Callable[[sqlite3.Connection], str]:
    def work(raw: sqlite3.Connection) -> str:
        if log is not None:
            log.append(name)
        raw.execute("INSERT INTO t (name) VALUES (?)", (name,))
        if name.startswith("bad"):
            raise ValueError(f"{name} refused after writing")
        return name

    return work


async def test_queued_transactions_share_one_commit_and_a_failing_one_is_undone_alone(
    writer: WriterThread, tmp_path: Path
) -> None:
    gate, held = blocked(writer)
    names = ["a", "b", "bad-c", "d", "a"]  # the second "a" breaks the UNIQUE constraint
    queued = [writer.transaction(insert(name)) for name in names]
    commits_before = writer.commits
    gate.set()
    await held
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert results[:2] == ["a", "b"] and results[3] == "d"
    assert isinstance(results[2], ValueError) and isinstance(results[4], sqlite3.IntegrityError)
    assert rows(tmp_path / "w.db") == ["a", "b", "d"]  # bad-c's own insert was rolled back, nothing else
    assert writer.commits - commits_before == 1


async def test_urgent_work_runs_before_ordinary_work_queued_earlier(writer: WriterThread, tmp_path: Path) -> None:
    order: list[str] = []
    gate, held = blocked(writer)
    queued = [writer.transaction(insert(n, order)) for n in ("o1", "o2")]
    queued.append(writer.transaction(insert("u1", order), urgent=True))
    queued.append(writer.transaction(insert("o3", order)))
    queued.append(writer.transaction(insert("u2", order), urgent=True))
    gate.set()
    await held
    await asyncio.gather(*queued)
    assert order == ["u1", "u2", "o1", "o2", "o3"]  # urgent first, each lane in its own order
    assert rows(tmp_path / "w.db") == order


async def test_a_raw_step_runs_alone_between_batches(writer: WriterThread, tmp_path: Path) -> None:
    seen: list[bool] = []
    gate, held = blocked(writer)
    first = writer.transaction(insert("before"))
    raw = writer.submit(lambda conn: seen.append(conn.in_transaction))
    second = writer.transaction(insert("after"))
    commits_before = writer.commits
    gate.set()
    await asyncio.gather(held, first, raw, second)
    assert seen == [False]  # the batch before it was committed; the one after had not begun
    assert writer.commits - commits_before == 2
    assert rows(tmp_path / "w.db") == ["before", "after"]


async def test_a_locked_database_fails_the_whole_batch_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    sqlite_connection(path).execute("CREATE TABLE t (name TEXT UNIQUE)").connection.close()
    writer = await WriterThread.open(connector(path, busy_ms=50))
    other = sqlite_connection(path, isolation_level=None)  # another process holding the write lock
    other.execute("BEGIN IMMEDIATE")
    try:
        gate, held = blocked(writer)
        queued = [writer.transaction(insert(n)) for n in ("x", "y")]
        gate.set()
        await held
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert all(isinstance(r, sqlite3.OperationalError) and "locked" in str(r) for r in results)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await writer.transaction(insert("z")) == "z"  # the thread carries on once the lock is free
    await writer.close()
    assert rows(path) == ["z"]


async def test_close_runs_what_was_queued_and_then_refuses_work(writer: WriterThread, tmp_path: Path) -> None:
    gate, held = blocked(writer)
    queued = [writer.transaction(insert(n)) for n in ("p", "q")]
    closing = asyncio.ensure_future(writer.close())
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(held, closing)
    assert [await f for f in queued] == ["p", "q"]
    assert rows(tmp_path / "w.db") == ["p", "q"]
    with pytest.raises(ValueError, match="closed"):
        writer.transaction(insert("late"))


async def test_run_refuses_work_that_awaits_anything_but_its_transaction(tmp_path: Path) -> None:
    async with open_database(scratch_url(tmp_path, "g.db")) as db:
        await db.execute("CREATE TABLE t (name TEXT)")

        async def strays(tx: Transaction) -> None:
            await tx.execute("INSERT INTO t (name) VALUES ('half')")
            await asyncio.sleep(0)  # not a statement: would need the event loop, from the writer thread

        with pytest.raises(RuntimeError, match="awaited something other"):
            await db.run(strays)
        assert await db.fetch_all("SELECT name FROM t") == []  # its statement was rolled back

        async def fine(tx: Transaction) -> int:
            return await tx.execute("INSERT INTO t (name) VALUES ('whole')")

        assert await db.run(fine) == 1
        assert [r["name"] for r in await db.fetch_all("SELECT name FROM t")] == ["whole"]


async def test_nothing_runs_inside_a_transaction_left_open_by_raw_steps(writer: WriterThread, tmp_path: Path) -> None:
    def begin_and_insert(raw: sqlite3.Connection) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO t (name) VALUES ('hop-1')")

    await writer.submit(begin_and_insert)  # a multi-hop transaction is open, its caller busy elsewhere
    urgent = writer.transaction(insert("urgent"), urgent=True)  # a webhook commit arrives meanwhile
    await asyncio.sleep(0.05)
    assert not urgent.done()  # it waits for the open transaction to end, rather than run inside it
    await writer.submit(lambda raw: raw.execute("INSERT INTO t (name) VALUES ('hop-2')"))
    await writer.submit(lambda raw: raw.execute("ROLLBACK"))  # the multi-hop transaction gives up
    assert await urgent == "urgent"
    assert rows(tmp_path / "w.db") == ["urgent"]  # all of the hop's work undone, none of it committed alone


class Fatal(BaseException):
    """What escapes the writer's own error handling (a failing ROLLBACK, say)."""


async def test_a_writer_that_fails_answers_everyone_and_refuses_more(writer: WriterThread) -> None:
    gate, held = blocked(writer)

    def explode(_: sqlite3.Connection) -> None:
        raise Fatal("the connection is unusable")

    fatal = writer.submit(explode)
    queued = writer.transaction(insert("never"))
    gate.set()
    await held
    for future in (fatal, queued):
        with pytest.raises(Fatal):
            await asyncio.wait_for(future, 5)  # answered, not left waiting forever
    assert not writer.alive
    with pytest.raises(ValueError, match="closed"):
        writer.transaction(insert("later"))


async def test_a_commit_skips_the_sync_only_when_none_of_its_transactions_needs_it(tmp_path: Path) -> None:
    """A transaction whose loss costs nothing (a quota reservation) commits without syncing the disk; one that
    shares its commit with a transaction that needs the sync gets it, and every commit after it is synced again."""
    path = tmp_path / "w.db"
    sqlite_connection(path).execute("CREATE TABLE t (name TEXT UNIQUE)").connection.close()
    statements: list[str] = []

    def traced() -> sqlite3.Connection:
        raw = connector(path)()
        raw.set_trace_callback(statements.append)
        return raw

    def syncs(batch: list[str]) -> list[str]:
        return [s for s in batch if s.startswith("PRAGMA synchronous") or s in ("BEGIN IMMEDIATE", "COMMIT")]

    writer = await WriterThread.open(traced)
    try:
        await writer.transaction(insert("alone"), durable=False)
        unsynced = ["PRAGMA synchronous=NORMAL", "BEGIN IMMEDIATE", "COMMIT", "PRAGMA synchronous=FULL"]
        assert syncs(statements) == unsynced
        statements.clear()
        gate, held = blocked(writer)
        queued = [writer.transaction(insert("light"), durable=False), writer.transaction(insert("needs-sync"))]
        gate.set()
        await held
        await asyncio.gather(*queued)
        assert syncs(statements) == ["BEGIN IMMEDIATE", "COMMIT"]  # shared with a durable one: synced
        assert await writer.submit(lambda raw: raw.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
    finally:
        await writer.close()
    assert rows(path) == ["alone", "light", "needs-sync"]
