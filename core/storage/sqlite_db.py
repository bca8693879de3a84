"""The SQLite backend (the embedded default) of the database interface (core/storage/db.py).

Writes go through one connection on its own thread (`WriterThread`, with an urgent lane for the webhook's
commits), guarded by an asyncio lock while a transaction spans several hops, because two tasks sharing a
connection would interleave statements inside each other's transactions. Reads that need no transaction use a
separate aiosqlite connection (WAL lets them run beside the writer), and the few small indexed reads a turn makes
(`lookup`) are made on the event loop's own thread, where they take microseconds and a hop to the reader's thread
costs ten times that; so is a small write transaction (`run(small=True)`: a turn's reservation, its charge, its
inbox event) when nothing else is writing: it commits there without waiting for the disk, and a durable one is
answered once `WalSync` has synced the WAL after it. Every write transaction starts with BEGIN IMMEDIATE so
read-then-write sequences hold the write lock from their first statement, across processes too.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import structlog

from core.errors import Conflict, StorageUnavailable, ValueOutOfRange
from core.storage.db import SQLITE, Dialect, Fetched, Params, Row, Transaction, WriteHealth
from core.storage.doorbell import LocalDoorbell
from core.storage.leadership import Leadership, SoleLeader
from core.storage.wal_sync import WalSync
from core.storage.write_lock import WriteLock
from core.storage.writer_thread import SYNCHRONOUS, WriterThread, end_transaction

T = TypeVar("T")
log = structlog.get_logger("core.storage.sqlite_db")

# Wait for another process's write lock instead of failing at once.
BUSY_TIMEOUT_MS = 5000
# What the WAL file is cut back to when it starts over, if it grew beyond (a reader that held its snapshot for long,
# a backup during traffic, kept the WAL from starting over meanwhile): without it the file keeps its largest size
# for good. Above what it holds in steady use (CHECKPOINT_EVERY commits of about twenty pages: some 8 MB), so the
# steady WAL is never cut.
WAL_KEPT_BYTES = 32 * 1024 * 1024
# Commits made on the event loop's thread between two checkpoints (`SqliteDatabase._checkpoint`): about twenty
# pages each on the message path (a new customer's reservation or charge: 19 WAL frames, counted with strace), so
# the WAL stays within twice SQLite's own bound of 1,000 pages.
CHECKPOINT_EVERY = 100
# The file is busy or locked (another process recovering it, say): a `lookup` asks the reader's thread instead.
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class _Busy(Exception):
    """`_write_inline` found the file's write lock taken: the transaction takes the hop to the writer thread."""


class ThreadTransaction:
    """A transaction's statements on the database thread itself (`Database.run`): each await completes at once."""

    dialect: Dialect = SQLITE

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    async def execute(self, sql: str, params: Params = ()) -> int:
        return _rowcount(self._raw.execute(sql, params))

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> int:
        return _rowcount(self._raw.executemany(sql, rows))

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = self._raw.execute(sql, params).fetchall()
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return self._raw.execute(sql, params).fetchall()

    async def defer(self, sql: str, params: Params = ()) -> None:
        self._raw.execute(sql, params).close()  # in-process: nothing to save by waiting

    async def prefetch(self, sql: str, params: Params = ()) -> Fetched:
        return Fetched(self._raw.execute(sql, params).fetchall())


class HopTransaction:
    """Statements inside one BEGIN IMMEDIATE ... COMMIT on the writer connection, one hop each.

    BEGIN travels with the first statement: a transaction of N statements costs N + 1 hops (the last is COMMIT)
    instead of 2N + 2. Every hop is time the write lock is held while the event loop and the database thread hand
    work back and forth, and the webhook acknowledgement waits behind that lock: transactions on the message path
    use `Database.run` instead.
    """

    dialect: Dialect = SQLITE

    def __init__(self, writer: WriterThread) -> None:
        self._writer = writer
        self.began = False

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._hop(lambda tx: tx.execute(sql, params))

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> int:
        return await self._hop(lambda tx: tx.execute_many(sql, rows))

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        return await self._hop(lambda tx: tx.fetch_one(sql, params))

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._hop(lambda tx: tx.fetch_all(sql, params))

    async def defer(self, sql: str, params: Params = ()) -> None:
        await self._hop(lambda tx: tx.defer(sql, params))

    async def prefetch(self, sql: str, params: Params = ()) -> Fetched:
        return await self._hop(lambda tx: tx.prefetch(sql, params))

    async def _hop(self, statement: Callable[[ThreadTransaction], Coroutine[Any, Any, T]]) -> T:
        begin, self.began = not self.began, True

        def run(raw: sqlite3.Connection) -> T:
            if begin:
                raw.execute("BEGIN IMMEDIATE")
            return _complete(statement(ThreadTransaction(raw)))

        return await self._writer.submit(run)


class SqliteDatabase:
    dialect: Dialect = SQLITE

    def __init__(
        self,
        writer: WriterThread,
        reader: aiosqlite.Connection,
        inline_writer: sqlite3.Connection,
        wal_sync: WalSync,
        path: Path,
    ) -> None:
        self._writer = writer
        self._wal_sync = wal_sync
        self._reader = reader
        # The event loop's own connection: its small writes (`_write_inline`) and its lookups. One connection for
        # both, so its page cache outlives its own commits; a second connection's cache was dropped at every
        # commit of this one, and each lookup read its pages again (a new customer's contact lookup: 50-74 µs
        # against 32, and the turn's inserts that follow a lookup of the same pages 25-40% slower).
        self._inline_writer = inline_writer
        self._inline_commits = 0
        self._restart_on_writer = False  # a checkpoint was queued: the next write takes the hop and starts the WAL over
        self._write_lock = WriteLock()
        self.path = path
        self.writes = WriteHealth()
        self.doorbell = LocalDoorbell()
        self._urgent_watchers: list[Callable[[float], None]] = []

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        with _translated():
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = await WriterThread.open(lambda: _connect_writer(path))
        reader = aiosqlite.connect(str(path), isolation_level=None)
        try:
            with _translated():
                await reader
                reader.row_factory = sqlite3.Row
                await reader._execute(lambda: _configure(reader._conn))  # on the reader's own thread, like its reads
                inline_writer = _connect_inline_writer(path)
        except BaseException:
            # Cancelled (Ctrl-C during start-up) or failed: aiosqlite's thread, once started, waits for work until
            # stopped and would keep the process from exiting.
            reader.stop()
            await writer.close()
            raise
        try:
            # SQLite's own name for the file: a symbolic link resolved, as SQLite names the WAL after it.
            [main] = [
                row["file"] for row in inline_writer.execute("PRAGMA database_list").fetchall() if row["name"] == "main"
            ]
            wal_sync = WalSync(Path(main + "-wal"))
            wal_sync.start()
        except BaseException:
            inline_writer.close()
            await reader.close()
            await writer.close()
            raise
        return cls(writer, reader, inline_writer, wal_sync, path)

    def watch_urgent_commits(self, listener: Callable[[float], None]) -> None:
        self._urgent_watchers.append(listener)

    def leadership(self, name: str) -> Leadership:
        return SoleLeader()

    @property
    def commits(self) -> tuple[int, int]:
        """Commits made so far, and the whole transactions they carried: for benchmarks."""
        return self._writer.commits + self._inline_commits, self._writer.transactions + self._inline_commits

    async def close(self) -> None:
        async with self._write_lock.hold():
            await self._wal_sync.close()
            self._inline_writer.close()
            await self._reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[HopTransaction]:
        """One write transaction whose work may await other things between statements (a hop per statement)."""
        self._refuse_after_failed_sync()
        async with self._write_lock.hold():
            tx = HopTransaction(self._writer)
            try:
                with _translated():
                    yield tx
                if tx.began:
                    # Shielded: a cancelled caller must not leave the shared connection mid-transaction.
                    with self.writes.watch(), _translated():
                        await asyncio.shield(self._writer.submit(lambda raw: end_transaction(raw, "COMMIT")))
            except BaseException:
                if tx.began:
                    # Queued behind any hop still running (one cancelled while BEGIN waited for another
                    # process's lock, say), and decided there: the thread looks whether a transaction is open.
                    await asyncio.shield(self._writer.submit(lambda raw: end_transaction(raw, "ROLLBACK")))
                raise

    async def run(
        self,
        work: Callable[[Transaction], Coroutine[Any, Any, T]],
        *,
        urgent: bool = False,
        durable: bool = True,
        small: bool = False,
    ) -> T:
        """A whole write transaction in one hop to the writer thread, answered once its commit is durable (or, with
        `durable=False`, once it is committed, not synced unless it shares its commit with a durable one).

        For the transactions of the message path (the webhook's group commit, claiming inbox work, the quota
        reservation, a turn's accounting, recording a sent part): nothing is held across a round trip through a
        busy event loop, and transactions queued together share one commit (`WriterThread`). `work` is an
        ordinary store coroutine; on the writer thread each of its statements completes at once, so it runs to
        its end in one step. It must await nothing but its transaction (anything else is a RuntimeError, and the
        transaction is rolled back) and must not touch the event loop. If it raises, its own changes are undone
        and the error is raised here. Shielded: once queued, a cancelled caller does not stop the commit.

        A `small` transaction that is not urgent, while nothing else writes (the writer thread idle, the write lock
        free), is made at once on the event loop's thread instead (`_write_inline`): a hop to the writer thread and
        back costs about ten times its SQL (145 µs of CPU against 13, measured here). Its commit does not wait for
        the disk (but see `_connect_inline_writer`), so the loop is not held for long; a durable one is answered
        once a sync of the WAL begun after its commit has ended (`WalSync`, shared by the commits that wait
        together). Other connections may see it before that. If the writer thread is busy, it first waits for what
        it was given to be done; if the file is busy all the same, it takes the hop.

        Once a sync of the WAL has failed, every write is refused (StorageUnavailable) until the gateway restarts:
        the commits it was for are visible and may not be on the disk, and after a failed fdatasync Linux may
        report the next one clean although the pages were dropped. PostgreSQL stops the same way.
        """
        self._refuse_after_failed_sync()
        if small and not urgent and await self._loop_may_write():
            try:
                with self.writes.watch(), _translated():
                    value = self._write_inline(work)
            except _Busy:
                pass  # nothing written, nothing learnt about the disk: the hop
            else:
                self._inline_commits += 1
                if self._inline_commits % CHECKPOINT_EVERY == 0:
                    self._checkpoint()
                if durable:
                    with self.writes.watch():
                        await self._wal_sync.committed()
                return value
        started = time.monotonic()
        async with self._write_lock.hold(urgent=urgent):
            # Queued before the lock is let go: whatever takes it next runs after or before it whole, never inside
            # it; and while a multi-hop transaction is open, the writer thread runs nothing else.
            done = self._writer.transaction(
                lambda raw: _complete(work(ThreadTransaction(raw))), urgent=urgent, durable=durable
            )
            self._restart_on_writer = False  # this commit starts the WAL over, if a checkpoint emptied it
        with self.writes.watch(), _translated():
            result = await asyncio.shield(done)
        if urgent:
            waited_ms = (time.monotonic() - started) * 1000
            for listener in self._urgent_watchers:
                listener(waited_ms)
        return result

    async def _loop_may_write(self) -> bool:
        """Whether a small transaction may be made on the event loop's thread now: nothing else writing (the writer
        thread idle, the write lock free) and the WAL not waiting to be started over on the writer thread.

        While the writer thread is busy it waits for that work instead of queueing behind it, which would keep the
        thread busy for the next write, and so on: under a steady load every write would take the hop. Twice at
        most (a checkpoint, then the write that starts the WAL over; behind a stream of the webhook's urgent
        commits it would wait for ever)."""
        for _ in range(2):
            if self._writer.idle or self._write_lock.busy:
                break
            await self._writer.drained()
        return self._writer.idle and not self._write_lock.busy and not self._restart_on_writer

    def _refuse_after_failed_sync(self) -> None:
        if self._wal_sync.failed is not None:
            with self.writes.watch():
                raise StorageUnavailable(
                    f"sqlite: a sync of the WAL failed ({self._wal_sync.failed}): writes are refused until the"
                    " gateway restarts"
                )

    def _write_inline(self, work: Callable[[Transaction], Coroutine[Any, Any, T]]) -> T:
        """`work` as a whole transaction on the event loop's own write connection (`_connect_inline_writer`);
        raises _Busy when the file's write lock is taken (the writer thread or another process got there first)."""
        raw = self._inline_writer
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in _BUSY_CODES:
                raise _Busy from exc
            raise
        try:
            value = _complete(work(ThreadTransaction(raw)))
            raw.execute("COMMIT")
        except BaseException:
            try:
                end_transaction(raw, "ROLLBACK")
            except sqlite3.Error:
                # Left open, it would hold the file's write lock and starve the writer thread: a new connection.
                raw.close()
                self._inline_writer = _connect_inline_writer(self.path)
            raise
        return value

    def _checkpoint(self) -> None:
        """Queue a checkpoint on the writer thread, at once: the loop's commits never make one (see
        `_connect_inline_writer`). Called with nothing queued there and the write lock free, so no transaction is
        open; until it is done, writes wait for it (`WriterThread.drained`) or queue behind it, so it copies the
        whole WAL (made beside a stream of commits, it would never catch up). The next write then takes the hop:
        it starts the WAL over, and the sync of the WAL's new header that this costs is the writer thread's, not
        the event loop's."""

        def checkpoint(raw: sqlite3.Connection) -> None:
            if raw.in_transaction:  # a raw step queued outside the write lock would break the invariant above
                raise RuntimeError("a checkpoint was queued inside a transaction")
            raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        def done(checkpointed: asyncio.Future[None]) -> None:
            if not checkpointed.cancelled() and (exc := checkpointed.exception()) is not None:
                log.warning("sqlite_checkpoint_failed", error=f"{type(exc).__name__}: {exc}")

        self._writer.submit(checkpoint).add_done_callback(done)
        # Set now, not once the loop hears that the checkpoint is done: a write between the thread's finishing it
        # and the loop's hearing so (a moment, longer on a busy machine) would find the thread idle and start the
        # WAL over here. Whatever takes the hop next is queued behind the checkpoint. (If it fails, that write
        # took the hop for nothing.)
        self._restart_on_writer = True

    async def execute(self, sql: str, params: Params = (), *, urgent: bool = False, small: bool = False) -> int:
        """One statement as its own transaction, in one hop (or none, `small`)."""
        return await self.run(lambda tx: tx.execute(sql, params), urgent=urgent, small=small)

    async def execute_returning(
        self, sql: str, params: Params = (), *, urgent: bool = False, durable: bool = True, small: bool = False
    ) -> list[Row]:
        return await self.run(lambda tx: tx.fetch_all(sql, params), urgent=urgent, durable=durable, small=small)

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        # The reader's row factory is sqlite3.Row: a mapping of column names (aiosqlite types it as a plain Row).
        with _translated():
            rows: Iterable[Any] = await self._reader.execute_fetchall(sql, params)
        return list(rows)

    async def lookup(self, sql: str, params: Params = ()) -> list[Row]:
        """`fetch_all` on the event loop's thread, for a read of a few rows through an index (a SELECT: it is made on
        the connection the loop writes with, which is not read-only). It never waits: when the file is busy (another
        process recovering it, say) the read goes to the reader's thread instead."""
        try:
            with _translated():
                return self._inline_writer.execute(sql, params).fetchall()
        except StorageUnavailable as exc:
            code = getattr(exc.__cause__, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
            if code not in _BUSY_CODES:
                raise
        return await self.fetch_all(sql, params)

    async def ping(self) -> bool:
        """Both connections answer: the reader a query, the writer's thread is running."""
        if not self._writer.alive:
            return False
        try:
            await self._reader.execute_fetchall("SELECT 1")
        except (sqlite3.Error, ValueError):
            return False
        return True


@contextmanager
def _translated() -> Iterator[None]:
    """sqlite3's failures as the domain's: a constraint is a Conflict, a number beyond 64 bits ValueOutOfRange, a
    locked, full or failing file StorageUnavailable (SQLite reports both as OperationalError, as it does a missing
    table)."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise Conflict("this conflicts with a change made at the same moment; please retry") from exc
    except OverflowError as exc:  # binding an int beyond 64 bits
        raise ValueOutOfRange(f"sqlite: {exc}") from exc
    except sqlite3.OperationalError as exc:
        if str(exc) == "integer overflow":  # arithmetic in SQL beyond 64 bits: the value, not the file
            raise ValueOutOfRange(f"sqlite: {exc}") from exc
        raise StorageUnavailable(f"sqlite: {exc}") from exc


def _rowcount(cursor: sqlite3.Cursor) -> int:
    count = cursor.rowcount
    cursor.close()
    return count


def _complete(step: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine whose awaits all complete at once (ThreadTransaction statements) to its result."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise RuntimeError("a Database.run transaction awaited something other than its own statements")


def _connect_writer(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves instead of sqlite3's implicit DEFERRED begins.
    raw = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    raw.row_factory = sqlite3.Row
    try:
        # WAL lets readers run beside the writer; FULL makes a commit survive power loss, which the quota ledger
        # and the webhook inbox (acknowledged to Meta) rely on.
        # The busy timeout first: switching to WAL takes a lock that another process starting at the same moment
        # (several `migrate` or `serve` at once) may hold; without it that would fail at once, "database is locked".
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}").fetchall()
        raw.execute("PRAGMA journal_mode=WAL").fetchall()
        _configure(raw)
    except BaseException:
        raw.close()
        raise
    return raw


def _connect_inline_writer(path: Path) -> sqlite3.Connection:
    """The event loop's connection, for its lookups and for whole transactions made while nothing else writes
    (SqliteDatabase.run): no busy wait, which would stop the whole loop; synchronous=NORMAL, so in WAL mode its
    commits are not synced (WalSync syncs the WAL for the durable ones); and no automatic checkpoint, which would
    sync the database file on the loop's thread: every CHECKPOINT_EVERY commits it queues one on the writer
    thread instead (`SqliteDatabase._checkpoint`), and the write after it, which starts the WAL over and syncs its
    new header, takes the hop. (After a checkpoint the writer thread's own commits made, that write may be the
    loop's: one sync on the loop's thread every thousand pages or so that the writer thread writes.)"""
    raw = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    raw.row_factory = sqlite3.Row
    try:
        _configure(raw)  # like every other connection, then as above
        for pragma in ("busy_timeout=0", "synchronous=NORMAL", "wal_autocheckpoint=0"):
            raw.execute(f"PRAGMA {pragma}").fetchall()
    except BaseException:
        raw.close()
        raise
    return raw


def _configure(raw: sqlite3.Connection) -> None:
    # fetchall steps each statement to its end, so no half-read PRAGMA cursor keeps a lock open.
    raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}").fetchall()
    raw.execute(f"PRAGMA synchronous={SYNCHRONOUS}").fetchall()
    raw.execute("PRAGMA foreign_keys=ON").fetchall()
    raw.execute(f"PRAGMA journal_size_limit={WAL_KEPT_BYTES}").fetchall()
    # Case-insensitive search (conversations `q`) folds both sides with `casefold(...)`: SQLite's LOWER() folds
    # ASCII only, so "Émile" would never match "émile". PostgreSQL would define casefold(text) as LOWER($1), which
    # follows the database's collation there (Unicode-aware with a UTF-8/ICU locale).
    raw.create_function("casefold", 1, casefold, deterministic=True)


def casefold(value: str | bytes | int | float | None) -> str | bytes | int | float | None:
    """The SQL `casefold(x)`: Unicode case folding of text; NULL and non-text values pass through unchanged."""
    return value.casefold() if isinstance(value, str) else value
